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
