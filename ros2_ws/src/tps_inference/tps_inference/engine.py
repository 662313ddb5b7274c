"""The inference runtime: one :class:`Engine` in front of ONNX Runtime, TensorRT and torch.

Named numpy arrays in, named numpy arrays out. The engine verifies a model file's sha256 before
loading it (:mod:`tps_inference.manifest`), picks the backend (``backend: auto`` logs which one
and why), checks every input against the model's specs (:mod:`tps_inference.specs`) and times
every call (host wall time, plus device time where there is a device clock).

Backend choice with ``backend: auto``:

=====================  =======================================================================
model                  choice
=====================  =======================================================================
``.onnx``              native TensorRT if ``tensorrt`` (>= 10) imports and a CUDA device is
                       present (engine built once into the cache); else ONNX Runtime with the
                       first available of ``ort_providers`` (TensorRT EP -> CUDA EP -> CPU)
``.engine``/``.plan``  native TensorRT (error if unavailable)
``.pt``/``.ts``        torch (TorchScript), CUDA if available and ``device`` allows, else CPU
``.pt2``               torch (``torch.export`` ExportedProgram; input specs read from it)
``nn.Module``          torch (``input_specs`` required)
=====================  =======================================================================
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends.base import Backend
from .device import cuda_status, tensorrt_status
from .engine_params import EngineParams
from .errors import ArtifactMissingError, BackendUnavailableError, EngineCacheError
from .manifest import Manifest, sha256_file, trusted_path
from .specs import TensorSpec, check_inputs

LOG = logging.getLogger("tps_inference.engine")

ONNX_SUFFIXES = (".onnx",)
TRT_ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
TORCH_FILE_SUFFIXES = (".pt", ".ts", ".jit", ".torchscript", ".pt2")


def model_kind(model) -> str:
    """"onnx" | "tensorrt_engine" | "torch_file" | "torch_module" for a path or an object.

    Raises:
        BackendUnavailableError: a file type no backend loads.
    """
    if isinstance(model, (str, os.PathLike)):
        suffix = Path(model).suffix.lower()
        if suffix in ONNX_SUFFIXES:
            return "onnx"
        if suffix in TRT_ENGINE_SUFFIXES:
            return "tensorrt_engine"
        if suffix in TORCH_FILE_SUFFIXES:
            return "torch_file"
        raise BackendUnavailableError(
            f"model file {model}: unknown type '{suffix}'; expected one of "
            f"{list(ONNX_SUFFIXES + TRT_ENGINE_SUFFIXES + TORCH_FILE_SUFFIXES)}"
        )
    if callable(model):
        return "torch_module"
    raise BackendUnavailableError(f"cannot load a model from a {type(model).__name__}; pass a file path or a torch module")


@dataclass(frozen=True)
class BackendSelection:
    """Which backend on which device, and why."""

    backend: str
    device: str
    reason: str


def select_backend(kind: str, params: EngineParams) -> BackendSelection:
    """Choose the backend for a model kind (see the module docstring).

    Raises:
        BackendUnavailableError: the requested backend cannot load this kind of model, or is not
            usable here (the message says what is missing).
    """
    requested = params.backend
    fits = {"onnxruntime": ("onnx",), "tensorrt": ("onnx", "tensorrt_engine"),
            "torch": ("torch_file", "torch_module")}
    if requested != "auto" and kind not in fits[requested]:
        raise BackendUnavailableError(f"backend '{requested}' cannot run a {kind.replace('_', ' ')} model")
    if kind in ("torch_file", "torch_module"):
        if params.device == "cpu":
            return BackendSelection("torch", "cpu", "torch model; device: cpu requested")
        ok, why = cuda_status()
        if ok:
            return BackendSelection("torch", "cuda", f"torch model; {why}")
        if params.device == "cuda":
            raise BackendUnavailableError(f"device 'cuda' requested for a torch model but {why}")
        return BackendSelection("torch", "cpu", f"torch model; {why}")
    trt_ok, trt_why = tensorrt_status()
    if kind == "tensorrt_engine" or requested == "tensorrt":
        if not trt_ok:
            raise BackendUnavailableError(f"TensorRT backend needed but {trt_why}")
        cuda_ok, cuda_why = cuda_status()
        if not cuda_ok:
            raise BackendUnavailableError(f"TensorRT backend needed but {cuda_why}")
        return BackendSelection("tensorrt", "cuda", f"{trt_why}; {cuda_why}")
    if requested == "onnxruntime":
        return BackendSelection("onnxruntime", params.device, "backend: onnxruntime requested")
    if params.device == "cpu":
        return BackendSelection("onnxruntime", "cpu", "ONNX model; device: cpu requested")
    if trt_ok:
        cuda_ok, cuda_why = cuda_status()
        if cuda_ok:
            return BackendSelection("tensorrt", "cuda", f"ONNX model; {trt_why}; {cuda_why}")
        return BackendSelection("onnxruntime", params.device, f"ONNX model; {trt_why} but {cuda_why}")
    return BackendSelection("onnxruntime", params.device, f"ONNX model; {trt_why}")


@dataclass(frozen=True)
class EngineResult:
    """One call's outputs and timing.

    Attributes:
        outputs: output name -> numpy array (host memory).
        host_time_ms: wall time of the whole call (input checks, transfers, inference) [ms].
        device_time_ms: accelerator time of the inference (CUDA events) [ms]; None on CPU.
    """

    outputs: dict[str, np.ndarray]
    host_time_ms: float
    device_time_ms: float | None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]

    def diagnostics(self) -> dict[str, str]:
        """Timing as diagnostic ``KeyValue`` strings (``device_time_ms`` only where measured)."""
        values = {"host_time_ms": f"{self.host_time_ms:.3f}"}
        if self.device_time_ms is not None:
            values["device_time_ms"] = f"{self.device_time_ms:.3f}"
        return values


class Engine:
    """A model loaded on the best (or the requested) backend.

    Args:
        model: path to ``.onnx`` / ``.engine`` / ``.pt`` (TorchScript) / ``.pt2`` (ExportedProgram),
            or a torch ``nn.Module``.
        params: :class:`EngineParams` (default: auto backend, sha256 verification on).
        sha256: expected digest of the file; without it the file must be listed in the manifest.
        manifest: a :class:`Manifest` or its path (default ``models/manifest.yaml``).
        input_specs: required for torch modules and TorchScript (they do not describe their inputs).
        output_names: names for a torch model's outputs (tuple order); default ``output_<i>``.
        allow_nonfinite: input names that may carry NaN/inf (e.g. padded point clouds).
        model_name: the manifest name, used in error messages.

    Raises:
        ArtifactError subclasses: missing file, sha256 mismatch, unlisted file.
        BackendUnavailableError: no usable backend for this model here (says what is missing).
        EngineCacheError: a stale/corrupt TensorRT engine that may not be rebuilt.
    """

    def __init__(
        self,
        model,
        params: EngineParams | None = None,
        *,
        sha256: str | None = None,
        manifest: Manifest | str | os.PathLike | None = None,
        input_specs: Sequence[TensorSpec] | None = None,
        output_names: Sequence[str] | None = None,
        allow_nonfinite: Iterable[str] = (),
        model_name: str | None = None,
    ):
        self.params = params or EngineParams()
        kind = model_kind(model)
        allow = frozenset(allow_nonfinite)
        path: Path | None = None
        if kind != "torch_module":
            path = Path(model)
            what = f"model '{model_name}' file" if model_name else "model file"
            if self.params.verify_sha256:
                path = trusted_path(path, sha256, manifest, what=what)
            elif not path.exists():
                raise ArtifactMissingError(f"{what} not found: {path}")
        self.model_path = path
        self.model_name = model_name
        self._manifest = manifest
        self.selection = select_backend(kind, self.params)
        self.backend: Backend = self._load(kind, model, path, input_specs, output_names, allow)
        if input_specs and self.backend.name != "torch":
            self._check_declared_specs(input_specs)
        self._allow = allow
        self.last_result: EngineResult | None = None
        self.calls = 0
        LOG.info("tps_inference.Engine %s: backend %s on %s [%s] -- why: %s",
                 path.name if path else type(model).__name__, self.backend.name, self.backend.device,
                 self.backend.detail, self.selection.reason)

    @classmethod
    def from_manifest(cls, name: str, params: EngineParams | None = None, *,
                      manifest: Manifest | str | os.PathLike | None = None, **kwargs) -> Engine:
        """Load model ``name`` from the manifest (sha256 verified before loading)."""
        man = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
        entry = man[name]
        return cls(entry.path, params, sha256=entry.sha256, manifest=man, model_name=name, **kwargs)

    def _load(self, kind, model, path, input_specs, output_names, allow) -> Backend:
        sel = self.selection
        if sel.backend == "onnxruntime":
            from .backends.onnxruntime_backend import OnnxRuntimeBackend

            return OnnxRuntimeBackend(path, self.params, allow)
        if sel.backend == "tensorrt":
            from .backends.tensorrt_backend import TensorRTBackend

            engine_path = self._tensorrt_engine(path) if kind == "onnx" else self._check_engine_file(path)
            return TensorRTBackend(engine_path, self.params, allow)
        from .backends.torch_backend import TorchBackend

        specs = None
        if input_specs:
            specs = [TensorSpec(s.name, s.dtype, s.shape, s.allow_nonfinite or s.name in allow) for s in input_specs]
        return TorchBackend(path if path is not None else model, self.params, sel.device,
                            input_specs=specs, output_names=output_names)

    def _tensorrt_engine(self, onnx_path: Path) -> Path:
        """The cached engine of this model (built, or a stale one rebuilt/refused, by get_or_build).
        A manifest model with a ``tensorrt`` recipe is built from the recipe's source ONNX at its
        precision (e.g. an ORT INT8 QDQ model -> the FP32 ONNX + INT8 calibration cache)."""
        from .engine_cache import (
            current_key,
            get_or_build,
            onnx_profile_shapes,
            tensorrt_builder,
            timing_cache_path,
        )
        from .lifecycle import TensorRTPlan, cache_dir_of, tensorrt_plan

        man = None
        if self.model_name is not None:
            man = self._manifest if isinstance(self._manifest, Manifest) else Manifest.load(self._manifest)
        if man is not None and self.model_name in man:
            plan = tensorrt_plan(self.model_name, man, self.params)
        else:
            plan = TensorRTPlan(str(onnx_path), onnx_path, self.params.precision, None,
                                onnx_profile_shapes(onnx_path, self.params.trt_input_shapes))
        if plan.problem:
            raise EngineCacheError(plan.problem)
        key = current_key(plan.onnx_path, plan.precision, plan.input_shapes, plan.calibration_cache)
        cache = cache_dir_of(self.params)
        build = tensorrt_builder(plan.precision, plan.input_shapes, self.params.trt_workspace_mb,
                                 calibration_cache=plan.calibration_cache, timing_cache=timing_cache_path(cache))
        return get_or_build(plan.onnx_path, cache, key, build, rebuild=self.params.rebuild_stale_engine)

    @staticmethod
    def _check_engine_file(engine_path: Path) -> Path:
        """A prebuilt engine: if its metadata is beside it, the engine must match it."""
        meta_path = engine_path.with_name(engine_path.name + ".json")
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise EngineCacheError(f"engine metadata {meta_path} is unreadable: {exc}") from exc
            if sha256_file(engine_path) != meta.get("engine_sha256"):
                raise EngineCacheError(f"engine {engine_path} does not match the sha256 in {meta_path.name}")
        return engine_path

    def _check_declared_specs(self, declared: Sequence[TensorSpec]) -> None:
        names = {s.name for s in self.backend.input_specs}
        unknown = [s.name for s in declared if s.name not in names]
        if unknown:
            raise BackendUnavailableError(
                f"input_specs name(s) {unknown} are not inputs of the model; its inputs are {sorted(names)}"
            )

    # ---------------------------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self.backend.input_specs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """Output specs (torch backends: known after the first call)."""
        return self.backend.output_specs

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        ins = ", ".join(s.describe() for s in self.input_specs)
        outs = ", ".join(s.describe() for s in self.output_specs) or "?"
        return f"{self.backend.name}/{self.backend.device} [{self.backend.detail}] in ({ins}) out ({outs})"

    def run(self, inputs: Mapping[str, np.ndarray]) -> EngineResult:
        """Check the inputs, run the model, return outputs with timing.

        Raises:
            InputError subclasses: a wrong name, dtype, rank/shape, or a NaN/inf where forbidden
                (the message names the input and what was expected).
        """
        t0 = time.perf_counter()
        checked = check_inputs(self.backend.input_specs, inputs, check_finite=self.params.check_finite)
        run = self.backend.run(checked)
        result = EngineResult(run.outputs, (time.perf_counter() - t0) * 1e3, run.device_time_ms)
        self.last_result = result
        self.calls += 1
        return result

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``run(inputs).outputs``."""
        return self.run(inputs).outputs
