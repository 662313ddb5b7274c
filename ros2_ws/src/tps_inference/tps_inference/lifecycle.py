"""Engine lifecycle for the nodes: what a model will run on, the state of its TensorRT engine,
and the ``build_only`` step (build or validate every engine, report, exit).

A node names its models (manifest names) and hands its :class:`EngineParams`; this module

1. plans each model: which backend this machine gives it (``tps_inference.engine.select_backend``)
   and, for TensorRT, which ONNX the engine is built from, at which precision, with which INT8
   calibration cache (:func:`tensorrt_plan`, from the manifest entry's optional ``tensorrt``
   recipe);
2. inspects the engine cache (:func:`inspect_engine`) -- also on a machine without TensorRT, where
   the key fields that need TensorRT and a GPU (version, GPU name) cannot be compared but the ONNX
   and calibration hashes can: a cached engine built from other ONNX bytes is reported ``stale``
   everywhere;
3. with ``build_only``, loads every model through :class:`tps_inference.Engine` (a TensorRT engine
   is built, or a stale one rebuilt / refused according to ``rebuild_stale_engine``; never used)
   and runs it once on zeros, then returns a report and an exit code (0 = every model ready).

Plain Python (no rclpy): the node only logs the report and exits with its code.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engine_cache import CacheStatus, check_cache, default_cache_dir, onnx_profile_shapes, probe_key
from .engine_params import EngineParams
from .errors import InferenceError
from .manifest import Manifest

LOG = logging.getLogger("tps_inference.lifecycle")
EXIT_READY = 0
EXIT_NOT_READY = 1


class BuildOnlyFinished(Exception):
    """Raised from a node's timer after a ``build_only`` run: ``tps_common.node.run_node`` ends
    the node with :attr:`exit_code` (0 when every model is ready)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = int(exit_code)


@dataclass(frozen=True)
class TensorRTPlan:
    """How TensorRT builds one manifest model.

    Attributes:
        model: the manifest name the node asked for.
        onnx_path: the ONNX the engine is built from (sha256-verified).
        precision: fp32 | fp16 | int8.
        calibration_cache: INT8 calibration cache (verified) or None.
        input_shapes: optimisation profile, name -> (min, opt, max).
        problem: why an engine cannot be built at all ("" when it can), e.g. a missing
            calibration cache.
    """

    model: str
    onnx_path: Path
    precision: str
    calibration_cache: Path | None
    input_shapes: Mapping[str, tuple]
    problem: str = ""


def tensorrt_plan(name: str, manifest: Manifest, params: EngineParams) -> TensorRTPlan:
    """The TensorRT recipe of manifest model ``name``: its ``tensorrt`` entry (source ONNX,
    precision, calibration cache) if it has one, else its own file at ``params.precision``.

    Raises:
        ArtifactError subclasses: the source ONNX or calibration cache is missing or modified.
        EngineCacheError: a dynamic input without an optimisation profile.
    """
    entry = manifest[name]
    recipe = dict(entry.tensorrt or {})
    source = manifest[recipe["source"]] if recipe else entry
    onnx_path = source.verify()
    precision = recipe.get("precision", params.precision)
    calibration, problem = None, ""
    calib_name = recipe.get("calibration", "")
    if calib_name:
        if calib_name in manifest:
            calibration = manifest[calib_name].verify()
        else:
            problem = (f"the INT8 TensorRT engine of '{name}' is calibrated with the calibration cache "
                       f"'{calib_name}', which {manifest.path} does not list: make it where TensorRT and a GPU "
                       "exist (python -m export all --target tensorrt --precision int8, then promote it), "
                       "or run this model at precision fp16")
    shapes = onnx_profile_shapes(onnx_path, params.trt_input_shapes)
    return TensorRTPlan(name, onnx_path, precision, calibration, shapes, problem)


@dataclass(frozen=True)
class EngineInspection:
    """What the engine cache holds for one plan, as far as this machine can tell."""

    status: CacheStatus | None
    unchecked: tuple[str, ...]  # key fields not compared here (no TensorRT / GPU)
    why_unchecked: str

    @property
    def state(self) -> str:
        return self.status.state if self.status else "unavailable"

    def describe(self) -> str:
        if self.status is None:
            return f"unavailable: {self.why_unchecked}"
        text = f"{self.status.state}: {self.status.reason}"
        if self.unchecked:
            text += f" ({', '.join(self.unchecked)} not compared here: {self.why_unchecked})"
        return text


def inspect_engine(plan: TensorRTPlan, cache_dir: str | os.PathLike) -> EngineInspection:
    """Classify the cached engine of ``plan`` (hit | missing | stale | corrupt), comparing every
    key field this machine knows; never needs TensorRT."""
    if plan.problem:
        return EngineInspection(None, (), plan.problem)
    key, unknown, why = probe_key(plan.onnx_path, plan.precision, plan.input_shapes, plan.calibration_cache)
    return EngineInspection(check_cache(cache_dir, plan.onnx_path, key, ignore=unknown), unknown, why)


@dataclass
class ModelReport:
    """One model of a lifecycle report."""

    name: str
    backend: str = "-"
    device: str = "-"
    reason: str = ""
    engine: str = "-"            # TensorRT cache state: hit | missing | stale | corrupt | unavailable | -
    engine_detail: str = ""
    ready: bool = False
    action: str = ""
    load_ms: float | None = None
    run_ms: float | None = None
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        state = "READY" if self.ready else "NOT READY"
        timing = ""
        if self.load_ms is not None:
            timing = f" (load {self.load_ms:.0f} ms" + (f", first run {self.run_ms:.1f} ms)" if self.run_ms else ")")
        text = f"[{state}] {self.name}: {self.backend}/{self.device}{timing}; {self.action}"
        if self.engine != "-":
            text += f"; TensorRT engine cache: {self.engine_detail}"
        return text


def cache_dir_of(params: EngineParams) -> Path:
    return Path(params.engine_cache_dir) if params.engine_cache_dir else default_cache_dir()


def zero_inputs(specs) -> dict[str, np.ndarray]:
    """Zeros for every input spec; named/dynamic dimensions become 1."""
    out = {}
    for s in specs:
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in s.shape)
        out[s.name] = np.zeros(shape, dtype=s.dtype)
    return out


def plan_and_inspect(name: str, params: EngineParams, manifest: Manifest) -> ModelReport:
    """Backend choice and engine-cache state of one model, without loading it. A backend that is
    not usable here is reported (``reason``), not raised: the cache is inspected all the same.

    Raises:
        ManifestError: ``name`` is not listed.
    """
    from .engine import model_kind, select_backend
    from .errors import BackendUnavailableError

    report = ModelReport(name)
    entry = manifest[name]
    kind = model_kind(entry.path)
    sel = None
    try:
        sel = select_backend(kind, params)
        report.backend, report.device, report.reason = sel.backend, sel.device, sel.reason
    except BackendUnavailableError as exc:
        report.reason = str(exc)
    if kind != "onnx" or params.backend in ("onnxruntime", "torch"):
        return report  # no TensorRT engine can be involved
    try:
        plan = tensorrt_plan(name, manifest, params)
        insp = inspect_engine(plan, cache_dir_of(params))
    except InferenceError as exc:
        report.engine, report.engine_detail = "unavailable", str(exc)
        return report
    report.engine, report.engine_detail = insp.state, insp.describe()
    if (sel is None or sel.backend != "tensorrt") and insp.state in ("stale", "corrupt"):
        policy = "rebuilt" if params.rebuild_stale_engine else "refused"
        runner = f"{sel.backend} runs the model" if sel else f"no backend can run it here: {report.reason}"
        report.warnings.append(f"{name}: the cached TensorRT engine is {insp.state} and is not used here "
                               f"({runner}); a TensorRT machine would have it {policy} "
                               f"(rebuild_stale_engine: {str(params.rebuild_stale_engine).lower()}): "
                               f"{insp.describe()}")
    return report


def build_models(names: Sequence[str], params: EngineParams | Mapping[str, EngineParams], *,
                 manifest: Manifest | str | os.PathLike | None = None, run_once: bool = True) -> list[ModelReport]:
    """The ``build_only`` step: plan, inspect, load (TensorRT: build / rebuild / refuse) and run
    every model once. Never raises for a model: its report says what failed.

    Args:
        names: manifest names.
        params: one :class:`EngineParams` for all, or name -> params.
        run_once: run each loaded model once on zeros (catches a graph that loads but fails).
    """
    from .engine import Engine

    man = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    reports = []
    for name in names:
        p = params[name] if isinstance(params, Mapping) else params
        try:
            report = plan_and_inspect(name, p, man)
        except InferenceError as exc:
            report = ModelReport(name, action=f"cannot be planned: {type(exc).__name__}: {exc}")
            reports.append(report)
            continue
        t0 = time.perf_counter()
        try:
            engine = Engine.from_manifest(name, p, manifest=man)
            report.load_ms = 1e3 * (time.perf_counter() - t0)
            report.backend, report.device = engine.backend_name, engine.device
            if run_once:
                res = engine.run(zero_inputs(engine.input_specs))
                report.run_ms = res.host_time_ms
            report.ready = True
            report.action = f"sha256 verified, loaded ({engine.backend.detail})" + (", ran once" if run_once else "")
            if engine.backend_name == "tensorrt":  # the cache was just (re)built or hit: inspect again
                report.engine_detail = inspect_engine(tensorrt_plan(name, man, p), cache_dir_of(p)).describe()
                report.engine = "hit"
        except (InferenceError, ValueError) as exc:
            report.action = f"failed: {type(exc).__name__}: {exc}"
        reports.append(report)
    return reports


def summarize(reports: Sequence[ModelReport]) -> tuple[str, int]:
    """(multi-line report text, exit code: 0 when every model is ready, else 1)."""
    lines = [r.line() for r in reports] + [w for r in reports for w in r.warnings]
    ready = sum(r.ready for r in reports)
    code = EXIT_READY if ready == len(reports) else EXIT_NOT_READY
    lines.append(f"build_only: {ready}/{len(reports)} model(s) ready; exit code {code}")
    return "\n".join(lines), code


def startup_warnings(names: Sequence[str], params: EngineParams, *,
                     manifest: Manifest | str | os.PathLike | None = None) -> list[str]:
    """Warnings a node logs at a normal start: stale or corrupt cached engines of its models
    (on a TensorRT machine the Engine itself rebuilds or refuses them)."""
    man = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    out = []
    for name in names:
        try:
            out += plan_and_inspect(name, params, man).warnings
        except InferenceError as exc:
            out.append(f"{name}: {exc}")
    return out
