"""Backends of the detector + tokenizer core (:mod:`tps_perception.tokenizer`).

Two callables per frame, chained in memory:

* feature backend ``bev -> (heatmap, regression, features)``: the detector graph with its head
  input exposed as a third output ``features`` (``export.tokenizer`` adds it to
  ``models/detector/detector{,_int8}.onnx``; heads and weights untouched), or the torch
  :class:`~tps_perception.tokenizer_model.DetectorWithFeatures`;
* token backend ``(features, boxes, velocities) -> (codes, qerr, scene_codes, scene_qerr)``:
  ``models/tokenizer/tokenizer{,_int8,_untargeted,_untargeted_int8}.onnx`` (a dynamic agent axis;
  at most ``max_agents`` agents per call, more run in chunks) or the torch
  :class:`~tps_perception.tokenizer_model.TokenizerGraph`.

Artifacts (``models/tokenizer/``): ``tokenizer.pt`` (targeted) and ``tokenizer_untargeted.pt``
(ablation): ``state_dict``, ``config``, ``variant``, ``code_table`` and ``info``;
``tokenizer.json``: the configuration and training summary. Heavy imports (torch, onnxruntime)
happen inside the functions that need them, so the node imports none of them unless chosen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tps_perception.backends import DEFAULT_THREADS, default_model_dir, load_meta, load_torch_model, repo_root
from tps_perception.tokenizer import FeatureBackend, TokenBackend
from tps_perception.tokenizer_layout import TokenizerConfig

VARIANTS = ("targeted", "untargeted")
FEATURE_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
TOKEN_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
FEATURE_OUTPUT = "features"
TOKEN_OUTPUTS = ("codes", "qerr", "scene_codes", "scene_qerr")
DEFAULT_MAX_AGENTS = TokenizerConfig.max_agents   # rows per tokenizer call (a dynamic graph's chunk size)
# manifest names: (detector graph with features, tokenizer graph) per precision
MANIFEST_NAMES = {"fp32": ("detector_fp32", "tokenizer_fp32"), "int8": ("detector_int8", "tokenizer_int8")}


def default_tokenizer_dir() -> Path:
    return repo_root() / "models" / "tokenizer"


def weights_name(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown tokenizer variant {variant!r}; expected one of {VARIANTS}")
    return "tokenizer.pt" if variant == "targeted" else "tokenizer_untargeted.pt"


def onnx_name(variant: str, int8: bool = False) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown tokenizer variant {variant!r}; expected one of {VARIANTS}")
    base = "tokenizer" if variant == "targeted" else "tokenizer_untargeted"
    return base + ("_int8" if int8 else "") + ".onnx"


def load_tokenizer_meta(model_dir: Path | None = None) -> dict:
    """``tokenizer.json`` (configuration, training summary)."""
    path = Path(model_dir or default_tokenizer_dir()) / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(f"tokenizer metadata not found: {path} (run `make train-tokenizer`)")
    return json.loads(path.read_text())


def load_torch_tokenizer(path: Path):
    """``tokenizer*.pt`` -> (AgentTokenizer in eval mode, checkpoint dict)."""
    import torch

    from tps_perception.tokenizer_model import AgentTokenizer

    if not Path(path).exists():
        raise FileNotFoundError(f"tokenizer weights not found: {path} (run `make train-tokenizer`)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    tok = AgentTokenizer(TokenizerConfig.from_dict(ckpt["config"]))
    tok.load_state_dict(ckpt["state_dict"])
    tok.eval()
    return tok, ckpt


# --- feature backends --------------------------------------------------------------------------
def torch_feature_backend(net, threads: int = DEFAULT_THREADS) -> FeatureBackend:
    """A CenterNet (frozen, eval) with its head input returned too."""
    import torch

    from tps_perception.tokenizer_model import DetectorWithFeatures, freeze

    torch.set_num_threads(threads)
    model = freeze(DetectorWithFeatures(net))

    def run(bev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            hm, reg, feat = model(torch.from_numpy(np.ascontiguousarray(bev[None], dtype=np.float32)))
        return hm[0].numpy(), reg[0].numpy(), feat[0].numpy()

    return run


def _session(onnx_path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def ort_feature_backend(onnx_path: Path, threads: int = DEFAULT_THREADS) -> FeatureBackend:
    """A detector ONNX graph that has the ``features`` output (see ``export.tokenizer``).

    Raises:
        ValueError: the graph has no ``features`` output.
    """
    sess = _session(onnx_path, threads)
    names = [o.name for o in sess.get_outputs()]
    if FEATURE_OUTPUT not in names:
        raise ValueError(f"{onnx_path} has no '{FEATURE_OUTPUT}' output (outputs {names}); "
                         "run `python -m export.tokenizer` to add it")

    def run(bev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hm, reg, feat = sess.run(["heatmap", "regression", FEATURE_OUTPUT],
                                 {"bev": np.ascontiguousarray(bev[None], dtype=np.float32)})
        return hm[0], reg[0], feat[0]

    return run


def make_feature_backend(name: str, model_dir: Path | None = None, threads: int = DEFAULT_THREADS) -> FeatureBackend:
    """Feature backend by name: torch | onnxruntime | onnxruntime-int8 (models/detector)."""
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    if name == "torch":
        net, _ = load_torch_model(model_dir / "detector.pt")
        return torch_feature_backend(net, threads)
    if name in ("onnxruntime", "onnxruntime-int8"):
        path = model_dir / ("detector.onnx" if name == "onnxruntime" else "detector_int8.onnx")
        if not path.exists():
            raise FileNotFoundError(f"ONNX model not found: {path} (run `python -m export.detector`)")
        return ort_feature_backend(path, threads)
    raise ValueError(f"unknown feature backend {name!r}; expected one of {FEATURE_BACKENDS}")


# --- token backends ----------------------------------------------------------------------------
def torch_token_backend(tok, threads: int = DEFAULT_THREADS) -> TokenBackend:
    """An AgentTokenizer (eval mode) through its export graph."""
    import torch

    from tps_perception.tokenizer_model import TokenizerGraph

    torch.set_num_threads(threads)
    graph = TokenizerGraph(tok).eval()

    def run(features: np.ndarray, boxes: np.ndarray, velocities: np.ndarray):
        n = len(boxes)
        b = np.zeros((max(n, 1), 7), np.float32)
        v = np.zeros((max(n, 1), 2), np.float32)
        b[:n], v[:n] = boxes[:, :7], velocities
        with torch.inference_mode():
            idx, qerr, sidx, sqerr = graph(torch.from_numpy(np.ascontiguousarray(features[None], dtype=np.float32)),
                                           torch.from_numpy(b[None]), torch.from_numpy(v[None]))
        return idx[0, :n].numpy(), qerr[0, :n].numpy(), sidx[0].numpy(), sqerr[0].numpy()

    return run


def chunked_token_runner(call, max_agents: int, fixed_rows: bool) -> TokenBackend:
    """A tokenizer graph ``call(features (1,C,h,w), boxes (1,M,7), velocity (1,M,2)) -> (codes,
    qerr, scene_codes, scene_qerr)`` as a token backend. Agents go in chunks of at most
    ``max_agents`` rows; ``fixed_rows`` (a static-shape graph) pads every chunk to ``max_agents``,
    else a chunk holds exactly its agents (one zero row when there are none, for the scene codes).
    The scene outputs of the first chunk are kept."""

    def run(features: np.ndarray, boxes: np.ndarray, velocities: np.ndarray):
        n = len(boxes)
        feat = np.ascontiguousarray(features[None], dtype=np.float32)
        codes, errs, scene = [], [], None
        for a in range(0, max(n, 1), max_agents):
            m = min(max_agents, n - a) if n else 0
            rows = max_agents if fixed_rows else max(m, 1)
            b = np.zeros((1, rows, 7), np.float32)
            v = np.zeros((1, rows, 2), np.float32)
            b[0, :m], v[0, :m] = boxes[a:a + m, :7], velocities[a:a + m]
            idx, qerr, sidx, sqerr = call(feat, b, v)
            codes.append(np.asarray(idx)[0, :m])
            errs.append(np.asarray(qerr)[0, :m])
            if scene is None:
                scene = (np.asarray(sidx)[0], np.asarray(sqerr)[0])
        return np.concatenate(codes), np.concatenate(errs), scene[0], scene[1]

    return run


def ort_token_backend(onnx_path: Path, threads: int = DEFAULT_THREADS, max_agents: int | None = None) -> TokenBackend:
    """A tokenizer ONNX graph; a static agent axis sets the chunk size, a dynamic one takes
    ``max_agents`` (default :data:`DEFAULT_MAX_AGENTS`) per call."""
    sess = _session(onnx_path, threads)
    rows = sess.get_inputs()[1].shape[1]
    fixed = isinstance(rows, int) and rows > 0

    def call(feat, b, v):
        return sess.run(list(TOKEN_OUTPUTS), {"features": feat, "boxes": b, "velocity": v})

    return chunked_token_runner(call, int(rows) if fixed else int(max_agents or DEFAULT_MAX_AGENTS), fixed)


def make_token_backend(name: str, variant: str = "targeted", model_dir: Path | None = None,
                       threads: int = DEFAULT_THREADS) -> TokenBackend:
    """Token backend by name (torch | onnxruntime | onnxruntime-int8) and variant (targeted |
    untargeted) from ``models/tokenizer``."""
    model_dir = Path(model_dir) if model_dir else default_tokenizer_dir()
    if name == "torch":
        tok, _ = load_torch_tokenizer(model_dir / weights_name(variant))
        return torch_token_backend(tok, threads)
    if name in ("onnxruntime", "onnxruntime-int8"):
        path = model_dir / onnx_name(variant, int8=name == "onnxruntime-int8")
        if not path.exists():
            raise FileNotFoundError(f"ONNX model not found: {path} (run `python -m export.tokenizer`)")
        return ort_token_backend(path, threads)
    raise ValueError(f"unknown token backend {name!r}; expected one of {TOKEN_BACKENDS}")


def engine_backends(precision: str = "int8", backend: str = "auto", threads: int = DEFAULT_THREADS
                    ) -> tuple[FeatureBackend, TokenBackend, dict, dict, str]:
    """Both networks through :class:`tps_inference.Engine` (sha256-verified via
    ``models/manifest.yaml``) by precision: ``int8`` (detector_int8 + tokenizer_int8) or ``fp32``.
    See :func:`engine_pair` (this is ``engine_pair`` with the manifest names of ``precision``).

    Raises:
        ValueError: unknown precision; else as :func:`engine_pair`.
    """
    from tps_inference.engine_params import EngineParams

    if precision not in MANIFEST_NAMES:
        raise ValueError(f"precision must be one of {sorted(MANIFEST_NAMES)}, got {precision!r}")
    det_name, tok_name = MANIFEST_NAMES[precision]
    return engine_pair(det_name, tok_name, EngineParams(backend=backend, intra_op_threads=threads, inter_op_threads=1))


def torch_manifest_name(tokenizer_name: str) -> str:
    """The torch weights' manifest entry of a tokenizer manifest name (``tokenizer_int8`` ->
    ``tokenizer_torch``, ``tokenizer_untargeted_fp32`` -> ``tokenizer_untargeted_torch``)."""
    base = tokenizer_name.rsplit("_", 1)[0] if tokenizer_name.endswith(("_int8", "_fp32", "_torch")) else tokenizer_name
    return base + "_torch"


def tokenizer_engine_params(params, max_agents: int):
    """``params`` with the TensorRT optimisation profile of the tokenizer's dynamic agent axis."""
    import dataclasses

    return dataclasses.replace(params, trt_input_shapes=agent_profile(max_agents))


def engine_pair(det_name: str, tok_name: str, params, manifest=None
                ) -> tuple[FeatureBackend, TokenBackend, dict, dict, str]:
    """The detector graph (with its ``features`` output) and the tokenizer graph, named by their
    manifest entries, for the perception node: one process, the feature map never leaves memory.

    Args:
        det_name: detector manifest name (``detector_int8``, ``detector_fp32``).
        tok_name: tokenizer manifest name (``tokenizer_int8``, ``tokenizer_fp32``,
            ``tokenizer_untargeted_int8``, ``tokenizer_untargeted_fp32``).
        params: :class:`tps_inference.EngineParams` of both (the tokenizer gets the TensorRT profile
            of its agent axis added). ``backend="torch"`` loads the torch weights of the manifest
            entries ``detector_torch`` and :func:`torch_manifest_name` (sha256-verified) instead.
        manifest: a loaded :class:`tps_inference.manifest.Manifest` (default: the repository's).

    Returns:
        (feature backend, token backend, detector metadata, tokenizer metadata, description).

    Raises:
        tps_inference.errors.InferenceError subclasses (missing/modified/unlisted file, backend
        unavailable); ValueError: a detector graph without ``features``.
    """
    from tps_inference.engine import Engine
    from tps_inference.manifest import Manifest, verify_sha256

    man = manifest or Manifest.load()
    det_meta = load_meta(man[det_name].path.parent)
    tok_meta = load_tokenizer_meta(man[tok_name].path.parent)
    max_agents = int(TokenizerConfig.from_dict(tok_meta["config"]).max_agents)
    if params.backend == "torch":
        det_entry, tok_entry = man["detector_torch"], man[torch_manifest_name(tok_name)]
        verify_sha256(det_entry.path, det_entry.sha256, what="model 'detector_torch' file")
        verify_sha256(tok_entry.path, tok_entry.sha256, what=f"model '{tok_entry.name}' file")
        threads = params.intra_op_threads or DEFAULT_THREADS
        net, _ = load_torch_model(det_entry.path)
        tok, _ = load_torch_tokenizer(tok_entry.path)
        return (torch_feature_backend(net, threads), torch_token_backend(tok, threads), det_meta, tok_meta,
                f"torch eager CPU ({det_entry.name} + {tok_entry.name}, {threads} threads)")
    det = Engine.from_manifest(det_name, params, manifest=man)
    tok = Engine.from_manifest(tok_name, tokenizer_engine_params(params, max_agents), manifest=man)
    if FEATURE_OUTPUT not in {s.name for s in det.output_specs}:
        raise ValueError(f"model '{det_name}' has no '{FEATURE_OUTPUT}' output; run `python -m export.tokenizer`")
    rows = next(s for s in tok.input_specs if s.name == "boxes").shape[1]
    fixed = isinstance(rows, int)

    def features(bev: np.ndarray):
        out = det({"bev": np.ascontiguousarray(bev[None], dtype=np.float32)})
        return np.asarray(out["heatmap"])[0], np.asarray(out["regression"])[0], np.asarray(out[FEATURE_OUTPUT])[0]

    def call(feat, b, v):
        out = tok({"features": feat, "boxes": b, "velocity": v})
        return tuple(out[k] for k in TOKEN_OUTPUTS)

    runner = chunked_token_runner(call, int(rows) if fixed else max_agents, fixed)
    return features, runner, det_meta, tok_meta, f"{det.describe()}; {tok.describe()}"


def agent_profile(max_agents: int, opt: int = 32) -> dict:
    """TensorRT optimisation profile (min, opt, max shapes) of the tokenizer's agent inputs."""
    opt = min(opt, max_agents)
    return {"boxes": ((1, 1, 7), (1, opt, 7), (1, max_agents, 7)),
            "velocity": ((1, 1, 2), (1, opt, 2), (1, max_agents, 2))}
