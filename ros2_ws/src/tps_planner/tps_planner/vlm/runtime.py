"""Running a trained planner on numpy batches, one interface for every backend: the planner node,
the open-loop evaluation and the benchmark call :class:`PlannerRuntime`.

Backends (``BACKENDS``):

* ``torch``: the checkpoint (``planner.pt``) in torch eager mode.
* ``onnxruntime``: the exported FP32 ONNX graph (``export/planner.py``: LoRA merged, all three
  stages in one graph) on ONNX Runtime CPU, through :class:`tps_inference.Engine`.
* ``onnxruntime-int8``: the same graph with ORT dynamic INT8 weights (per-channel).
* ``tensorrt``: a TensorRT engine (FP16; INT8 with the export's calibration cache) built from the
  FP32 graph through ``tps_inference.engine_cache`` (needs TensorRT and an NVIDIA GPU).

The exported backends read the export's manifest ``planner_export.json`` (written by
``python -m export.planner``): ``path`` is that file, its folder, or a checkpoint ``<stem>.pt`` --
then the default export folder ``build/export/<stem>`` (``build/export/planner`` for the shipped
``planner.pt``, ``make export-planner``) is used and must have been made from that very checkpoint
(sha256). Every file is sha256-checked before use. The instruction's word-embedding
lookup runs here, outside the graph (a numpy gather from ``word_embeddings.npy``), with the trunk's
own tokenizer.

Output of :meth:`PlannerRuntime.run` (numpy, leading axis B; A = agent slots of the batch, trimmed
to the most agents any frame has, at least 1):
``relevance`` (A), ``intent`` (A, len(INTENTS)), ``lead`` (A), ``no_lead`` (), ``scene``
(len(SCENES)), ``light`` (len(LIGHTS)) -- the stage-1 probabilities stages 2 and 3 read;
``modes`` (A, K, T, 2), ``mode_probs`` (A, K) -- the stage-2 forecasts stage 3 read;
``trajectory`` (8, 2), ``log_sigma`` (8) -- the ego plan, base_link [m].
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "tensorrt")
P1_KEYS = ("relevance", "intent", "lead", "no_lead", "scene", "light")
P2_KEYS = ("modes", "mode_probs")
S3_KEYS = ("trajectory", "log_sigma")
OUTPUT_KEYS = P1_KEYS + P2_KEYS + S3_KEYS
AGENT_KEYS = ("agent_codes", "agent_feats", "agent_mask")
EXPORT_MANIFEST = "planner_export.json"
EXPORT_FORMAT = 1
# backend -> the manifest's graph entry it runs by default
GRAPH_OF_BACKEND = {"onnxruntime": "fp32", "onnxruntime-int8": "int8", "tensorrt": "fp32"}


def outputs_to_numpy(out: dict) -> dict:
    """The model's forward output -> the runtime's flat numpy dict (module docstring)."""
    res = {k: out["p1"][k].detach().float().cpu().numpy() for k in P1_KEYS}
    res.update({k: out["p2"][k].detach().float().cpu().numpy() for k in P2_KEYS})
    res.update({k: out["s3"][k].detach().float().cpu().numpy() for k in S3_KEYS})
    return res


def trim_agents(batch: dict) -> dict:
    """The batch with agent slots cut to the most agents any frame has (at least 1): the slots
    are filled nearest-first, so only padding goes."""
    keep = max(1, int(np.asarray(batch["agent_mask"]).sum(1).max()))
    return {k: (np.asarray(v)[:, :keep] if k in AGENT_KEYS else v) for k, v in batch.items()}


def graph_inputs(batch: dict, ids: np.ndarray, text_mask: np.ndarray, table: np.ndarray) -> dict:
    """A (trimmed) numpy batch + token ids -> the exported graph's inputs: the word embeddings
    gathered from ``table`` (float32), the camera as float (B, 3, H, W) in 0..1 (as
    :func:`tps_planner.vlm.model.to_torch_batch`), masks bool, codes int64."""
    cam = np.asarray(batch["camera"])
    return {
        "text_embeds": np.ascontiguousarray(table[np.asarray(ids, np.int64)], dtype=np.float32),
        "text_mask": np.ascontiguousarray(text_mask, dtype=bool),
        "camera": np.ascontiguousarray(cam.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0),
        "camera_valid": np.ascontiguousarray(batch["camera_valid"], dtype=bool),
        "ego": np.ascontiguousarray(batch["ego"], dtype=np.float32),
        "agent_codes": np.ascontiguousarray(batch["agent_codes"], dtype=np.int64),
        "agent_feats": np.ascontiguousarray(batch["agent_feats"], dtype=np.float32),
        "agent_mask": np.ascontiguousarray(batch["agent_mask"], dtype=bool),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_export_dir(stem: str = "planner") -> Path:
    """Where ``python -m export.planner`` puts the export of checkpoint ``<stem>.pt`` by default:
    ``build/export/<stem>`` (``build/export/planner`` for the shipped ``planner.pt``)."""
    from tps_inference.manifest import repo_root

    return repo_root() / "build" / "export" / stem


def read_export_manifest(path: str | Path) -> tuple[dict, Path]:
    """(manifest, its folder) of an export: ``path`` is ``planner_export.json``, its folder, or a
    checkpoint ``<stem>.pt`` whose export lies in :func:`default_export_dir` ``(stem)`` (its source
    sha256 must match).

    Raises:
        ValueError: missing / unreadable / foreign manifest, or an export of another checkpoint
            (the file is named).
    """
    p = Path(path)
    source = None
    if p.suffix == ".pt":
        source = p
        p = default_export_dir(source.stem) / EXPORT_MANIFEST
    elif p.is_dir():
        p = p / EXPORT_MANIFEST
    if not p.is_file():
        hint = f" (exported from {source}?)" if source else ""
        raise ValueError(f"planner export manifest {p} not found{hint}; run `make export-planner` "
                         "(python -m export.planner)")
    try:
        man = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not a readable planner export manifest ({exc})") from exc
    if not isinstance(man, dict) or man.get("format") != EXPORT_FORMAT or not isinstance(man.get("files"), dict) \
            or "config" not in man or "embeddings" not in man:
        raise ValueError(f"{p}: not a planner export manifest (format {EXPORT_FORMAT} with config, files, "
                         "embeddings expected)")
    if source is not None:
        if not source.is_file():
            raise ValueError(f"planner checkpoint {source} not found")
        want = man.get("source", {}).get("sha256")
        if _sha256(source) != want:
            raise ValueError(f"{p} was exported from another checkpoint than {source} (sha256 "
                             f"{str(want)[:12]}...); run `make export-planner` again")
    return man, p.parent


def _checked_file(folder: Path, entry: dict, what: str) -> Path:
    """The file of a manifest entry, its sha256 verified. Raises ValueError naming it."""
    if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
        raise ValueError(f"planner export manifest in {folder}: entry {what!r} lacks file/sha256")
    path = folder / entry["file"]
    if not path.is_file():
        raise ValueError(f"planner {what} file {path} not found")
    got = _sha256(path)
    if got != entry["sha256"]:
        raise ValueError(f"planner {what} file {path} is corrupt or modified: sha256 {got[:12]}... but the "
                         f"manifest says {str(entry['sha256'])[:12]}...")
    return path


def load_embeddings(folder: Path, entry: dict, d_model: int) -> np.ndarray:
    """The word-embedding table (vocab, d_model) as float32; ValueError naming a bad file."""
    path = _checked_file(folder, entry, "word-embedding table")
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"planner word-embedding table {path} is unreadable ({exc})") from exc
    if table.ndim != 2 or table.shape[1] != d_model or not np.isfinite(table).all():
        raise ValueError(f"planner word-embedding table {path} has shape {table.shape} (vocab, {d_model} expected) "
                         "or non-finite values")
    return np.ascontiguousarray(table, dtype=np.float32)


def tensorrt_shapes(cfg, max_batch: int = 8, opt_agents: int = 16) -> dict:
    """The TensorRT optimisation profile of the planner graph: batch 1..max_batch (opt 1), agents
    1..max_agents (opt ``opt_agents``)."""
    from tps_planner.vlm.layout import AGENT_DIM

    w, h = cfg.camera_size
    t, d, a = cfg.max_text_tokens, cfg.d_model, cfg.max_agents
    opt_a = min(int(opt_agents), a)
    per = {"text_embeds": (t, d), "text_mask": (t,), "camera": (3, h, w), "camera_valid": (), "ego": (cfg.ego_dim,)}
    shapes = {k: ((1, *s), (1, *s), (max_batch, *s)) for k, s in per.items()}
    for k, tail in (("agent_codes", ()), ("agent_feats", (AGENT_DIM,)), ("agent_mask", ())):
        shapes[k] = ((1, 1, *tail), (1, opt_a, *tail), (max_batch, a, *tail))
    return shapes


class PlannerRuntime:
    """A loaded planner. ``run(batch, texts)``: a numpy batch of
    :func:`tps_planner.vlm.inputs.stack_frames` and one instruction text per frame -> outputs.

    Args:
        path: ``planner.pt`` (torch; also accepted by the exported backends, see the module
            docstring), or the export's ``planner_export.json`` / folder.
        backend: one of :data:`BACKENDS`.
        threads: intra-op threads (torch, ONNX Runtime).
        graph: the manifest's graph entry to run instead of the backend's default (e.g.
            ``int8_per_tensor``, the per-tensor INT8 comparison graph).
        precision: TensorRT build precision (``fp16`` or ``int8``; int8 needs the export's
            calibration cache ``trt_int8_calib``).
        engine_cache: TensorRT engine cache folder (default: tps_inference's).

    Raises (constructor):
        ValueError: unknown backend or an unreadable / foreign / corrupt model file (named).
        tps_inference.errors.BackendUnavailableError: ``tensorrt`` without TensorRT or a GPU.
    """

    def __init__(self, path: str | Path, backend: str = "torch", threads: int = 1, *, graph: str | None = None,
                 precision: str = "fp16", engine_cache: str | Path | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown planner backend {backend!r}; one of {BACKENDS}")
        self.backend = backend
        self.path = Path(path)
        self.threads = int(threads)
        if backend == "torch":
            self._init_torch()
        else:
            self._init_exported(graph or GRAPH_OF_BACKEND[backend], precision, engine_cache)

    # --- torch ------------------------------------------------------------------------------
    def _init_torch(self) -> None:
        import torch

        from tps_planner.vlm.model import InstructionTokenizer, load_planner

        torch.set_num_threads(self.threads)
        self.model, ckpt = load_planner(self.path)
        self.cfg = self.model.cfg
        self.summary = ckpt.get("summary", {})
        self.tokenizer = InstructionTokenizer(self.cfg.max_text_tokens)
        self.description = f"torch eager ({self.path.name}, {self.threads} threads)"

    # --- exported graphs ------------------------------------------------------------------------
    def _init_exported(self, graph: str, precision: str, engine_cache) -> None:
        from tps_planner.vlm.layout import PlannerConfig
        from tps_planner.vlm.trunk import load_tokenizer

        man, folder = read_export_manifest(self.path)
        self.manifest, self.export_dir = man, folder
        try:
            self.cfg = PlannerConfig.from_dict(man["config"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{folder / EXPORT_MANIFEST}: bad planner config ({exc})") from exc
        self.summary = man.get("summary", {})
        if graph not in man["files"]:
            raise ValueError(f"{folder / EXPORT_MANIFEST} lists no graph {graph!r} (has {sorted(man['files'])}); "
                             "run `make export-planner`")
        onnx_path = _checked_file(folder, man["files"][graph], f"{graph} graph")
        self.table = load_embeddings(folder, man["embeddings"], self.cfg.d_model)
        self.text_tokenizer = load_tokenizer()
        self.graph = graph
        if self.backend == "tensorrt":
            self.engine = self._tensorrt_engine(onnx_path, man, folder, precision, engine_cache)
            self.description = f"tensorrt {precision} ({onnx_path.name})"
        else:
            self.engine = self._ort_engine(onnx_path, man["files"][graph]["sha256"])
            self.description = f"onnxruntime CPU {graph} ({onnx_path.name}, {self.threads} threads)"

    def _ort_engine(self, onnx_path: Path, sha256: str):
        from tps_inference import Engine, EngineParams
        from tps_inference.errors import InferenceError

        params = EngineParams(backend="onnxruntime", device="cpu", ort_providers=("CPUExecutionProvider",),
                              intra_op_threads=self.threads, inter_op_threads=1)
        try:
            return Engine(onnx_path, params, sha256=sha256, model_name=f"planner {self.graph}")
        except InferenceError as exc:
            raise ValueError(f"planner graph {onnx_path}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own load errors, named with the file
            raise ValueError(f"planner graph {onnx_path} could not be loaded ({type(exc).__name__}: {exc})") from exc

    def _tensorrt_engine(self, onnx_path: Path, man: dict, folder: Path, precision: str, engine_cache):
        from tps_inference import Engine, EngineParams
        from tps_inference.engine_cache import (
            current_key,
            default_cache_dir,
            get_or_build,
            tensorrt_builder,
            timing_cache_path,
        )
        from tps_inference.manifest import sha256_file

        if precision not in ("fp16", "int8"):
            raise ValueError(f"planner TensorRT precision must be fp16 or int8, got {precision!r}")
        calib = None
        if precision == "int8":
            if "trt_int8_calib" not in man["files"]:
                raise ValueError(f"{folder / EXPORT_MANIFEST} has no TensorRT INT8 calibration cache (trt_int8_calib); "
                                 "run `python -m export.planner --tensorrt` on a GPU machine")
            calib = _checked_file(folder, man["files"]["trt_int8_calib"], "TensorRT INT8 calibration cache")
        cache = Path(engine_cache) if engine_cache else default_cache_dir()
        shapes = tensorrt_shapes(self.cfg)
        key = current_key(onnx_path, precision, shapes, calib)
        build = tensorrt_builder(precision, shapes, 2048, calibration_cache=calib, timing_cache=timing_cache_path(cache))
        engine = get_or_build(onnx_path, cache, key, build)
        return Engine(engine, EngineParams(backend="tensorrt"), sha256=sha256_file(engine))

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Instruction texts -> (ids (B, T) int64, mask (B, T) bool), the same call as
        :class:`tps_planner.vlm.model.InstructionTokenizer` (padded to ``max_text_tokens``)."""
        enc = self.text_tokenizer([str(t) for t in texts], padding="max_length", max_length=self.cfg.max_text_tokens,
                                  truncation=True, return_tensors="np")
        return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(bool)

    def run(self, batch: dict, texts: list[str]) -> dict:
        """Outputs of every stage for a batch (module docstring).

        Raises:
            ValueError: a text count that is not the batch size, more agent slots than
                ``max_agents``, or a malformed input (named).
        """
        if len(texts) != len(batch["ego"]):
            raise ValueError(f"{len(texts)} instruction texts for {len(batch['ego'])} frames")
        trimmed = trim_agents(batch)
        a = trimmed["agent_codes"].shape[1]
        if a > self.cfg.max_agents:
            raise ValueError(f"{a} agent tokens > max_agents {self.cfg.max_agents}")
        if self.backend == "torch":
            import torch

            from tps_planner.vlm.model import to_torch_batch

            with torch.inference_mode():
                out = self.model(to_torch_batch(trimmed, texts, self.tokenizer))
            return outputs_to_numpy(out)
        ids, mask = self.tokenize(texts)
        outs = self.engine(graph_inputs(trimmed, ids, mask, self.table))
        return {k: np.asarray(outs[k], np.float32) for k in OUTPUT_KEYS}
