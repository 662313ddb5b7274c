"""Network backends behind one call: ``backend(bev) -> (heatmap_logits, regression)``.

The detector core only sees this callable, so torch eager, ONNX Runtime FP32/INT8 and TensorRT
share the same numpy pre/post-processing. Model artifacts (``models/detector/``):

* ``detector.pt``   torch checkpoint: ``state_dict``, ``net`` (NetConfig dict), ``grid``, ``decode``
* ``detector.onnx`` FP32 graph, input ``bev`` (1, C, H, W), outputs ``heatmap``, ``regression``
* ``detector_int8.onnx`` static INT8 QDQ graph (calibrated on train-split frames)

ONNX backends go through :class:`tps_inference.Engine` when the runtime package provides it
(``backend`` auto/onnxruntime/tensorrt, sha256 trust via the manifest); a plain ONNX Runtime
session is the fallback so the detector stays usable in any virtualenv with onnxruntime.
Heavy imports (torch, onnxruntime) happen inside the functions that need them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

Backend = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
DEFAULT_THREADS = 2


def repo_root() -> Path:
    """Repository root (``TPS_ROOT`` overrides)."""
    env = os.environ.get("TPS_ROOT")
    if env:
        return Path(env)
    # ros2_ws/src/tps_perception/tps_perception/backends.py -> repository root
    return Path(__file__).resolve().parents[4]


def default_model_dir() -> Path:
    return repo_root() / "models" / "detector"


def load_meta(model_dir: Path) -> dict:
    """``detector.json``: grid/decode/net parameters that every backend shares."""
    path = Path(model_dir) / "detector.json"
    if not path.exists():
        raise FileNotFoundError(f"detector metadata not found: {path} (run `python -m training.detector`)")
    return json.loads(path.read_text())


def load_torch_model(path: Path):
    """Load ``detector.pt`` -> (CenterNet in eval mode, checkpoint dict)."""
    import torch

    from tps_perception.model import CenterNet, NetConfig

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = CenterNet(NetConfig.from_dict(ckpt["net"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


def torch_backend(model, threads: int = DEFAULT_THREADS) -> Backend:
    """Wrap a torch module (eval mode, no grad)."""
    import torch

    torch.set_num_threads(threads)

    def run(bev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            hm, reg = model(torch.from_numpy(np.ascontiguousarray(bev[None])))
        return hm[0].numpy(), reg[0].numpy()

    return run


def ort_backend(onnx_path: Path, threads: int = DEFAULT_THREADS) -> Backend:
    """Plain ONNX Runtime CPU session."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

    def run(bev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hm, reg = sess.run(["heatmap", "regression"], {"bev": np.ascontiguousarray(bev[None], dtype=np.float32)})
        return hm[0], reg[0]

    return run


def make_backend(name: str, model_dir: Path | None = None, threads: int = DEFAULT_THREADS) -> Backend:
    """Backend by name: torch | onnxruntime | onnxruntime-int8.

    Raises:
        ValueError: unknown name; FileNotFoundError: artifact missing.
    """
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    if name == "torch":
        model, _ = load_torch_model(model_dir / "detector.pt")
        return torch_backend(model, threads)
    if name in ("onnxruntime", "onnxruntime-int8"):
        fname = "detector.onnx" if name == "onnxruntime" else "detector_int8.onnx"
        path = model_dir / fname
        if not path.exists():
            raise FileNotFoundError(f"ONNX model not found: {path} (run `python -m export.detector`)")
        return ort_backend(path, threads)
    raise ValueError(f"unknown detector backend {name!r}; expected one of {BACKENDS}")


MANIFEST_NAMES = {"fp32": "detector_fp32", "int8": "detector_int8"}


def engine_backend(model_name: str, backend: str = "auto", threads: int = DEFAULT_THREADS,
                   model_dir: Path | None = None, engine_params=None) -> tuple[Backend, dict, str]:
    """The network through :class:`tps_inference.Engine` (sha256-verified via models/manifest.yaml).

    Args:
        model_name: manifest name of an ONNX model (``detector_int8``, ``detector_fp32``).
        backend: tps_inference backend: auto | onnxruntime | tensorrt | torch. ``torch`` loads
            ``detector.pt`` (a state dict, verified against the manifest entry ``detector_torch``)
            into the module and hands it to the Engine.
        threads: intra-op threads.
        model_dir: folder of ``detector.json``; default: the folder of the manifest entry's file.
        engine_params: further :class:`tps_inference.EngineParams` (TensorRT precision, engine
            cache, stale-engine policy); ``backend`` and ``threads`` above override its fields.

    Returns:
        (backend callable, detector metadata, a one-line description of what was loaded).

    Raises:
        tps_inference.errors.InferenceError subclasses (missing/modified/unlisted file, backend
        unavailable), FileNotFoundError (metadata).
    """
    import dataclasses

    from tps_inference.engine import Engine
    from tps_inference.engine_params import EngineParams
    from tps_inference.manifest import Manifest, verify_sha256

    params = dataclasses.replace(engine_params or EngineParams(), backend=backend, intra_op_threads=threads,
                                 inter_op_threads=1)
    man = Manifest.load()
    if backend == "torch":
        from tps_inference.specs import TensorSpec

        entry = man["detector_torch"]
        verify_sha256(entry.path, entry.sha256, what="model 'detector_torch' file")
        meta = load_meta(Path(model_dir) if model_dir else entry.path.parent)
        model, _ = load_torch_model(entry.path)
        size = int(round(2 * meta["grid"]["range_m"] / meta["grid"]["cell_m"]))
        spec = TensorSpec("bev", np.float32, (1, meta["net"]["in_channels"], size, size))
        engine = Engine(model, params, input_specs=[spec], output_names=("heatmap", "regression"),
                        model_name="detector_torch")
    else:
        entry = man[model_name]
        meta = load_meta(Path(model_dir) if model_dir else entry.path.parent)
        engine = Engine.from_manifest(model_name, params, manifest=man)

    def run(bev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = engine({"bev": np.ascontiguousarray(bev[None], dtype=np.float32)})
        return np.asarray(out["heatmap"])[0], np.asarray(out["regression"])[0]

    return run, meta, engine.describe()
