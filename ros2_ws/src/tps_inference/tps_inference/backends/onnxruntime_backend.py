"""ONNX Runtime backend: execution providers in order of preference, session options from params."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..engine_cache import default_cache_dir
from ..engine_params import EngineParams
from ..errors import BackendUnavailableError
from ..specs import TensorSpec, normalise_dim
from .base import Backend, BackendRun

LOG = logging.getLogger("tps_inference.engine")

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32, "tensor(uint32)": np.uint32, "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                  "DmlExecutionProvider", "MIGraphXExecutionProvider")


def import_onnxruntime():
    """Import onnxruntime or raise :class:`BackendUnavailableError` saying so."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(f"onnxruntime is not importable: {exc}") from exc
    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers the installed onnxruntime was built with ([] if not importable)."""
    try:
        return list(import_onnxruntime().get_available_providers())
    except BackendUnavailableError:
        return []


def choose_providers(params: EngineParams, available: list[str]) -> tuple[list[str], list[str]]:
    """(providers to request, requested ones that are unavailable) in ``params.ort_providers`` order.

    ``device == "cpu"`` keeps only the CPU provider; ``device == "cuda"`` drops it.

    Raises:
        BackendUnavailableError: nothing requested is available.
    """
    wanted = list(params.ort_providers)
    if params.device == "cpu":
        wanted = [p for p in wanted if p == "CPUExecutionProvider"] or ["CPUExecutionProvider"]
    elif params.device == "cuda":
        wanted = [p for p in wanted if p in _GPU_PROVIDERS]
    chosen = [p for p in wanted if p in available]
    dropped = [p for p in wanted if p not in available]
    if not chosen:
        raise BackendUnavailableError(
            f"none of the ONNX Runtime execution providers {wanted} (device {params.device}) is available;"
            f" this onnxruntime has {available}"
        )
    return chosen, dropped


def provider_options(provider: str, params: EngineParams, cache_dir: str) -> dict[str, str]:
    """Options ONNX Runtime gets for one execution provider (precision and engine cache for the
    TensorRT EP; the CPU EP takes none)."""
    if provider == "TensorrtExecutionProvider":
        return {
            "trt_fp16_enable": str(params.precision in ("fp16", "int8")),
            "trt_int8_enable": str(params.precision == "int8"),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": cache_dir,
            "trt_max_workspace_size": str(params.trt_workspace_mb << 20),
        }
    if provider == "CUDAExecutionProvider":
        return {"device_id": "0"}
    return {}


def _spec(node, allow_nonfinite: frozenset[str] = frozenset()) -> TensorSpec:
    dtype = _ORT_TYPES.get(node.type)
    if dtype is None:
        raise BackendUnavailableError(f"tensor '{node.name}' has ONNX type {node.type}, which the runtime does not map")
    return TensorSpec(node.name, np.dtype(dtype), tuple(normalise_dim(d) for d in node.shape),
                      allow_nonfinite=node.name in allow_nonfinite)


class OnnxRuntimeBackend(Backend):
    """An ``onnxruntime.InferenceSession`` with providers and options from :class:`EngineParams`."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, params: EngineParams, allow_nonfinite: frozenset[str] = frozenset()):
        ort = import_onnxruntime()
        providers, dropped = choose_providers(params, list(ort.get_available_providers()))
        options = ort.SessionOptions()
        options.intra_op_num_threads = params.intra_op_threads
        options.inter_op_num_threads = params.inter_op_threads
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[params.graph_optimization]
        cache_dir = str(Path(params.engine_cache_dir or default_cache_dir()) / "ort_tensorrt_ep")
        with_options = [(p, provider_options(p, params, cache_dir)) for p in providers]
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=with_options)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise BackendUnavailableError(f"onnxruntime could not load {model_path}: {exc}") from exc
        self.providers = list(self.session.get_providers())
        self.dropped_providers = dropped
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "cuda"
        self.detail = f"providers {self.providers}" + (f" (unavailable here: {dropped})" if dropped else "")
        self.input_specs = tuple(_spec(n, allow_nonfinite) for n in self.session.get_inputs())
        self.output_specs = tuple(_spec(n) for n in self.session.get_outputs())
        self._output_names = [s.name for s in self.output_specs]

    def run(self, inputs: dict[str, np.ndarray]) -> BackendRun:
        feed = {name: np.ascontiguousarray(arr) for name, arr in inputs.items()}
        values = self.session.run(self._output_names, feed)
        return BackendRun(dict(zip(self._output_names, values, strict=True)), None)
