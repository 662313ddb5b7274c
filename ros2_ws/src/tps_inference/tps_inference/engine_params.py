"""The frozen parameters of :class:`tps_inference.Engine` (backend choice, session options, cache)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tps_common.params import ParameterError

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
ORT_PROVIDERS_DEFAULT = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
MAX_THREADS = 256

Shape = tuple[int, ...]


@dataclass(frozen=True)
class EngineParams:
    """How an :class:`~tps_inference.Engine` loads and runs a model.

    Attributes:
        backend: "auto" (best available; logged with the reason), "onnxruntime", "tensorrt", "torch".
        device: "auto", "cpu" or "cuda" (torch backend; "cuda" with ONNX Runtime keeps only GPU
            execution providers ahead of the CPU one).
        ort_providers: ONNX Runtime execution providers in order of preference; those not
            available in the installed onnxruntime are dropped (and logged).
        intra_op_threads / inter_op_threads: ONNX Runtime (and torch intra-op) threads; 0 = the
            runtime's default.
        graph_optimization: ONNX Runtime graph optimisation level.
        precision: TensorRT build precision (int8 needs a QDQ graph); "fp16" on torch CUDA means
            autocast. Part of the engine-cache key.
        engine_cache_dir: folder for TensorRT engines + metadata ("" = ``data/engines``).
        rebuild_stale_engine: rebuild a stale or corrupted cached engine (else refuse it).
        trt_workspace_mb: TensorRT builder workspace [MiB].
        trt_input_shapes: optimisation profile for dynamic inputs: name -> (min, opt, max) shapes.
        check_finite: reject NaN/inf in float inputs whose spec forbids them.
        verify_sha256: verify model files against ``models/manifest.yaml`` (or a given sha256)
            before loading. Turn off only for throw-away development models.
    """

    backend: str = "auto"
    device: str = "auto"
    ort_providers: tuple[str, ...] = ORT_PROVIDERS_DEFAULT
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    precision: str = "fp32"
    engine_cache_dir: str = ""
    rebuild_stale_engine: bool = True
    trt_workspace_mb: int = 1024
    trt_input_shapes: Mapping[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)
    check_finite: bool = True
    verify_sha256: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (("backend", BACKENDS), ("device", DEVICES), ("precision", PRECISIONS),
                              ("graph_optimization", GRAPH_OPTIMIZATIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ParameterError(f"engine parameter '{name}' = {value!r} is not one of {list(allowed)}")
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_THREADS:
                raise ParameterError(f"engine parameter '{name}' = {value!r} is out of range; allowed [0, {MAX_THREADS}]")
        if isinstance(self.trt_workspace_mb, bool) or not isinstance(self.trt_workspace_mb, int) \
                or self.trt_workspace_mb < 1:
            raise ParameterError(f"engine parameter 'trt_workspace_mb' = {self.trt_workspace_mb!r} must be an int >= 1")
        providers = self.ort_providers
        if isinstance(providers, str):
            providers = tuple(p.strip() for p in providers.split(",") if p.strip())
        providers = tuple(providers)
        if not providers or not all(isinstance(p, str) and p.endswith("ExecutionProvider") for p in providers):
            raise ParameterError(
                f"engine parameter 'ort_providers' = {self.ort_providers!r} must be a non-empty list of "
                "ONNX Runtime provider names (e.g. CUDAExecutionProvider)"
            )
        object.__setattr__(self, "ort_providers", providers)
        shapes = {}
        for name, triple in dict(self.trt_input_shapes).items():
            try:
                lo, opt, hi = (tuple(int(d) for d in s) for s in triple)
            except (TypeError, ValueError) as exc:
                raise ParameterError(
                    f"engine parameter 'trt_input_shapes[{name!r}]' must be (min, opt, max) shapes, got {triple!r}"
                ) from exc
            if not (len(lo) == len(opt) == len(hi)) or any(
                not (a <= b <= c) for a, b, c in zip(lo, opt, hi, strict=True)
            ):
                raise ParameterError(
                    f"engine parameter 'trt_input_shapes[{name!r}]' needs min <= opt <= max of one rank, got {triple!r}"
                )
            shapes[str(name)] = (lo, opt, hi)
        object.__setattr__(self, "trt_input_shapes", shapes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], prefix: str = "") -> EngineParams:
        """Build from a node's parameter dict; keys are the field names (after ``prefix``).

        Keys that are not fields are ignored, so a node may pass all its parameters.

        Raises:
            ParameterError: a value out of range, naming the parameter.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        picked = {}
        for key, value in values.items():
            if key.startswith(prefix) and key[len(prefix):] in names:
                name = key[len(prefix):]
                picked[name] = tuple(value) if name == "ort_providers" and isinstance(value, list) else value
        return cls(**picked)
