"""TensorRT engine cache: keys, metadata, staleness and corruption checks, build-or-load.

An engine is only valid for the exact ONNX file, TensorRT version, GPU, precision and input
shapes (optimisation profile) it was built for. The cache stores each engine beside a metadata
JSON holding that key::

    <cache_dir>/<onnx stem>.<precision>.engine
    <cache_dir>/<onnx stem>.<precision>.engine.json   {"key": {...}, "key_digest": ..., "engine_sha256": ...,
                                                        "engine_bytes": ..., "created_utc": ..., "builder": {...}}

:func:`check_cache` classifies what it finds as ``hit``, ``missing``, ``stale`` (metadata key differs
from the wanted key -- the message lists each differing field) or ``corrupt`` (unreadable metadata,
engine file missing/empty/modified). :func:`get_or_build` rebuilds a stale or corrupt engine when
allowed and otherwise refuses it with :class:`~tps_inference.errors.EngineCacheError`; it never
uses one silently. The logic here is plain Python (no TensorRT import) so it is unit-tested
everywhere; only :func:`current_key` and the TensorRT builder need TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import BackendUnavailableError, EngineCacheError, InferenceError
from .manifest import repo_root, sha256_file

LOG = logging.getLogger("tps_inference.engine_cache")
METADATA_VERSION = 2  # 2: the key holds the INT8 calibration cache's sha256
_KEY_FIELDS = ("onnx_sha256", "tensorrt_version", "gpu_name", "precision", "input_shapes", "calibration_sha256")
# Key fields that only a machine with TensorRT and a GPU can know (see :func:`probe_key`).
MACHINE_FIELDS = ("tensorrt_version", "gpu_name")
ENGINE_CACHE_ENV = "TPS_ENGINE_CACHE"
TIMING_CACHE_NAME = "timing.cache"

ShapeProfile = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def _canonical_shapes(shapes: ShapeProfile) -> tuple:
    """Sorted, hashable ``((name, ((min), (opt), (max))), ...)``."""
    return tuple(sorted((str(n), tuple(tuple(int(d) for d in s) for s in triple)) for n, triple in shapes.items()))


@dataclass(frozen=True)
class EngineCacheKey:
    """Everything a TensorRT engine depends on.

    Attributes:
        onnx_sha256: sha256 of the ONNX file the engine was built from.
        tensorrt_version: ``tensorrt.__version__``.
        gpu_name: CUDA device name (engines are GPU-specific).
        precision: fp32 | fp16 | int8.
        input_shapes: name -> (min, opt, max) shape of the optimisation profile (fixed inputs
            have min == opt == max).
        calibration_sha256: sha256 of the INT8 calibration cache the engine was calibrated with
            ("" when none: FP16/FP32, or an explicitly quantised QDQ graph).
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str
    input_shapes: tuple
    calibration_sha256: str = ""

    def __post_init__(self) -> None:
        shapes = self.input_shapes
        if isinstance(shapes, Mapping):
            shapes = _canonical_shapes(shapes)
        else:
            shapes = _canonical_shapes(dict((n, t) for n, t in shapes))
        object.__setattr__(self, "input_shapes", shapes)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["input_shapes"] = {n: [list(s) for s in triple] for n, triple in self.input_shapes}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> EngineCacheKey:
        """Raises KeyError/TypeError/ValueError on a malformed dict (caller reports corruption)."""
        shapes = {n: tuple(tuple(s) for s in triple) for n, triple in d["input_shapes"].items()}
        return cls(str(d["onnx_sha256"]), str(d["tensorrt_version"]), str(d["gpu_name"]), str(d["precision"]),
                   shapes, str(d.get("calibration_sha256", "")))

    def digest(self) -> str:
        """sha256 of the key's canonical JSON (stable across runs and machines)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: EngineCacheKey, ignore: Iterable[str] = ()) -> list[str]:
        """``["tensorrt_version: 10.0.1 -> 10.3.0", ...]`` from ``other`` (cached) to ``self`` (wanted);
        fields in ``ignore`` are not compared (those this machine cannot know, see :func:`probe_key`)."""
        mine, theirs = self.as_dict(), other.as_dict()
        skip = set(ignore)
        return [f"{f}: {_short(theirs[f])} -> {_short(mine[f])}" for f in _KEY_FIELDS
                if f not in skip and mine[f] != theirs[f]]


def _short(value) -> str:
    """sha256 digests shortened to 12 hex digits in messages; other values as they are."""
    text = str(value)
    return text[:12] + "..." if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


@dataclass(frozen=True)
class CacheStatus:
    """Outcome of :func:`check_cache`: state is hit | missing | stale | corrupt."""

    state: str
    reason: str
    engine_path: Path
    metadata_path: Path


def default_cache_dir() -> Path:
    """``$TPS_ENGINE_CACHE`` (e.g. a mounted volume in the vehicle image), else ``data/engines``
    under the repository (git-ignored)."""
    env = os.environ.get(ENGINE_CACHE_ENV)
    return Path(env) if env else repo_root() / "data" / "engines"


def engine_paths(cache_dir: str | os.PathLike, onnx_path: str | os.PathLike, precision: str) -> tuple[Path, Path]:
    """(engine file, metadata JSON) for one model and precision."""
    engine = Path(cache_dir) / f"{Path(onnx_path).stem}.{precision}.engine"
    return engine, engine.with_name(engine.name + ".json")


def write_metadata(engine_path: Path, key: EngineCacheKey, builder: Mapping | None = None) -> Path:
    """Write the metadata JSON beside a freshly built engine; return its path."""
    engine_path = Path(engine_path)
    meta = {
        "metadata_version": METADATA_VERSION,
        "key": key.as_dict(),
        "key_digest": key.digest(),
        "engine_file": engine_path.name,
        "engine_sha256": sha256_file(engine_path),
        "engine_bytes": engine_path.stat().st_size,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "builder": dict(builder or {}),
    }
    meta_path = engine_path.with_name(engine_path.name + ".json")
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(meta_path)
    return meta_path


def read_metadata(metadata_path: Path) -> tuple[dict, EngineCacheKey]:
    """Parse a metadata JSON; raise :class:`EngineCacheError` naming the file if malformed."""
    try:
        meta = json.loads(Path(metadata_path).read_text())
        key = EngineCacheKey.from_dict(meta["key"])
        for field in ("engine_sha256", "engine_bytes", "key_digest"):
            meta[field]  # noqa: B018 -- presence check
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EngineCacheError(f"engine metadata {metadata_path} is unreadable or incomplete: {exc!r}") from exc
    if meta["key_digest"] != key.digest():
        raise EngineCacheError(f"engine metadata {metadata_path}: key_digest does not match its key (edited by hand?)")
    return meta, key


def check_cache(cache_dir: str | os.PathLike, onnx_path: str | os.PathLike, key: EngineCacheKey,
                ignore: Iterable[str] = ()) -> CacheStatus:
    """Classify the cached engine for ``onnx_path`` at ``key.precision`` against ``key``
    (key fields in ``ignore`` are not compared: a machine without TensorRT checks the rest)."""
    engine, meta_path = engine_paths(cache_dir, onnx_path, key.precision)
    if not engine.exists() and not meta_path.exists():
        return CacheStatus("missing", f"no cached engine {engine}", engine, meta_path)
    if not meta_path.exists():
        return CacheStatus("corrupt", f"engine {engine} has no metadata file {meta_path.name}", engine, meta_path)
    try:
        meta, cached = read_metadata(meta_path)
    except EngineCacheError as exc:
        return CacheStatus("corrupt", str(exc), engine, meta_path)
    if not engine.exists():
        return CacheStatus("corrupt", f"metadata {meta_path.name} exists but engine file {engine} is missing",
                           engine, meta_path)
    size = engine.stat().st_size
    if size == 0 or size != meta["engine_bytes"]:
        return CacheStatus("corrupt", f"engine {engine} has {size} bytes; its metadata says {meta['engine_bytes']}",
                           engine, meta_path)
    actual = sha256_file(engine)
    if actual != meta["engine_sha256"]:
        return CacheStatus("corrupt", f"engine {engine} sha256 {actual[:12]}... does not match its metadata "
                           f"{str(meta['engine_sha256'])[:12]}...", engine, meta_path)
    diffs = key.differences(cached, ignore)
    if diffs:
        return CacheStatus("stale", f"engine {engine} was built for another configuration: " + "; ".join(diffs),
                           engine, meta_path)
    return CacheStatus("hit", f"engine {engine} matches (key {key.digest()[:12]})", engine, meta_path)


def get_or_build(
    onnx_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    key: EngineCacheKey,
    build: Callable[[Path, Path], Mapping | None],
    *,
    rebuild: bool = True,
) -> Path:
    """The path of a valid cached engine, building it (``build(onnx_path, engine_path)``) if needed.

    Args:
        build: writes the engine file; may return builder info stored in the metadata.
        rebuild: rebuild stale/corrupt engines; if False they are refused.

    Raises:
        EngineCacheError: a stale or corrupt engine with ``rebuild=False``, or a build that did
            not produce a file.
    """
    status = check_cache(cache_dir, onnx_path, key)
    if status.state == "hit":
        LOG.info("TensorRT engine cache hit: %s", status.reason)
        return status.engine_path
    if status.state in ("stale", "corrupt"):
        if not rebuild:
            raise EngineCacheError(f"refusing {status.state} TensorRT engine: {status.reason} "
                                   "(set rebuild_stale_engine: true or delete it)")
        LOG.warning("rebuilding %s TensorRT engine: %s", status.state, status.reason)
        for path in (status.engine_path, status.metadata_path):
            path.unlink(missing_ok=True)
    else:
        LOG.info("building TensorRT engine: %s", status.reason)
    status.engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = status.engine_path.with_name(status.engine_path.name + ".tmp")
    builder_info = build(Path(onnx_path), tmp)
    if not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise EngineCacheError(f"building {status.engine_path} from {onnx_path} produced no engine")
    tmp.replace(status.engine_path)
    write_metadata(status.engine_path, key, builder_info)
    return status.engine_path


# ----------------------------------------------------------------------------------------------
# TensorRT-specific pieces (need TensorRT; imported lazily)


def _import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as exc:
        raise BackendUnavailableError(f"TensorRT is not importable here ({exc}); the engine cache needs it to build") \
            from exc
    return trt


def current_key(onnx_path: str | os.PathLike, precision: str, input_shapes: ShapeProfile,
                calibration_cache: str | os.PathLike | None = None) -> EngineCacheKey:
    """The key for building ``onnx_path`` on this machine (needs TensorRT and a CUDA device)."""
    from .device import cuda_status, gpu_name

    trt = _import_tensorrt()
    ok, reason = cuda_status()
    if not ok:
        raise BackendUnavailableError(f"TensorRT needs a CUDA device: {reason}")
    calib = sha256_file(calibration_cache) if calibration_cache else ""
    return EngineCacheKey(sha256_file(onnx_path), str(trt.__version__), gpu_name(), precision, input_shapes, calib)


def probe_key(onnx_path: str | os.PathLike, precision: str, input_shapes: ShapeProfile,
              calibration_cache: str | os.PathLike | None = None) -> tuple[EngineCacheKey, tuple[str, ...], str]:
    """The key as far as *this* machine can tell, without needing TensorRT or a GPU.

    Returns:
        (key, fields this machine cannot know -- compare with ``check_cache(..., ignore=...)`` --,
        why they are unknown ("" when TensorRT and a GPU are here and the key is complete)).
    """
    from .device import cuda_status, gpu_name, tensorrt_status

    trt_ok, trt_why = tensorrt_status()
    cuda_ok, cuda_why = cuda_status()
    version = ""
    if trt_ok:
        import tensorrt as trt

        version = str(trt.__version__)
    unknown = tuple(f for f, ok in (("tensorrt_version", trt_ok), ("gpu_name", cuda_ok)) if not ok)
    why = "; ".join(w for w, ok in ((trt_why, trt_ok), (cuda_why, cuda_ok)) if not ok)
    calib = sha256_file(calibration_cache) if calibration_cache else ""
    key = EngineCacheKey(sha256_file(onnx_path), version, gpu_name() if cuda_ok else "", precision, input_shapes,
                         calib)
    return key, unknown, why


def onnx_profile_shapes(onnx_path: str | os.PathLike, overrides: ShapeProfile) -> dict:
    """(min, opt, max) per ONNX input: static inputs from the graph, dynamic ones from ``overrides``.

    Raises:
        EngineCacheError: a dynamic input without an override (names it).
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initialisers = {i.name for i in model.graph.initializer}
    shapes = {}
    for inp in model.graph.input:
        if inp.name in initialisers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
        if inp.name in overrides:
            shapes[inp.name] = tuple(tuple(s) for s in overrides[inp.name])
        elif all(d >= 0 for d in dims):
            shapes[inp.name] = (tuple(dims),) * 3
        else:
            raise EngineCacheError(
                f"ONNX input '{inp.name}' of {onnx_path} has dynamic shape {dims}; give its (min, opt, max) shapes "
                "in EngineParams.trt_input_shapes"
            )
    return shapes


def tensorrt_builder(precision: str, input_shapes: ShapeProfile, workspace_mb: int, *,
                     calibration_cache: str | os.PathLike | None = None,
                     calibration_batches: Iterable[Mapping[str, np.ndarray]] | None = None,
                     timing_cache: str | os.PathLike | None = None) -> Callable[[Path, Path], dict]:
    """A ``build(onnx_path, engine_path)`` for :func:`get_or_build` using the TensorRT 10 builder.

    Args:
        precision: fp32 | fp16 | int8.
        calibration_cache: INT8 of an FP32 graph (implicit quantisation): the calibration cache
            file. Read when it exists (no data needed then); written when ``calibration_batches``
            are given and it does not exist yet. Without it, INT8 expects a QDQ graph (explicit
            quantisation). TensorRT 10 deprecates the implicit path but still runs it.
        calibration_batches: INT8 calibration inputs (name -> array, batch 1) for the entropy
            calibrator; only used when no calibration cache exists.
        timing_cache: TensorRT timing cache file, read if present and written back after the
            build (it speeds up later builds on the same GPU and TensorRT; never changes validity).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise EngineCacheError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    batches = list(calibration_batches) if calibration_batches is not None else []
    if batches and not calibration_cache:
        raise EngineCacheError("INT8 calibration batches need a calibration_cache path to write the cache to")

    def build(onnx_path: Path, engine_path: Path) -> dict:
        trt = _import_tensorrt()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(Path(onnx_path).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineCacheError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        info = {"tensorrt_version": str(trt.__version__), "workspace_mb": int(workspace_mb), "precision": precision}
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            # FP16 lets layers without INT8 scales fall back to half precision rather than FP32.
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
            if calibration_cache:
                cache = Path(calibration_cache)
                if not cache.exists() and not batches:
                    raise EngineCacheError(f"INT8 calibration cache {cache} does not exist and no calibration data "
                                           "was given to make it")
                config.int8_calibrator = _entropy_calibrator(trt, batches, cache)
                info["calibration"] = "cache" if cache.exists() else f"{len(batches)} batches -> {cache.name}"
            else:
                info["calibration"] = "explicit (QDQ graph)"
        profile = builder.create_optimization_profile()
        dynamic = False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            lo, opt, hi = input_shapes[tensor.name]
            if any(d < 0 for d in tensor.shape):
                dynamic = True
            profile.set_shape(tensor.name, lo, opt, hi)
        if dynamic:
            config.add_optimization_profile(profile)
            if precision == "int8" and calibration_cache:
                config.set_calibration_profile(profile)
        timing = Path(timing_cache) if timing_cache else None
        if timing is not None:
            cache_obj = config.create_timing_cache(timing.read_bytes() if timing.exists() else b"")
            config.set_timing_cache(cache_obj, ignore_mismatch=False)
        t0 = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineCacheError(f"TensorRT failed to build an engine from {onnx_path} (precision {precision})")
        info["build_s"] = round(time.perf_counter() - t0, 1)
        Path(engine_path).write_bytes(bytes(serialized))
        if timing is not None:
            timing.parent.mkdir(parents=True, exist_ok=True)
            timing.write_bytes(bytes(config.get_timing_cache().serialize()))
            info["timing_cache"] = str(timing)
        return info

    return build


def _entropy_calibrator(trt, batches: list[Mapping[str, np.ndarray]], cache_path: Path):
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` (device copies via cuda-python) and
    reading/writing ``cache_path``. With an existing cache TensorRT reads it and asks for no data."""
    from .backends.tensorrt_backend import import_cudart

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.rt = import_cudart() if batches else None
            self.k = 0
            self.mem: dict[str, int] = {}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self.k >= len(batches):
                return None
            batch = batches[self.k]
            self.k += 1
            ptrs = []
            for name in names:
                arr = np.ascontiguousarray(batch[name])
                if name not in self.mem:
                    err, ptr = self.rt.cudaMalloc(arr.nbytes)
                    if int(err) != 0:
                        raise EngineCacheError(f"cudaMalloc for INT8 calibration failed: {err}")
                    self.mem[name] = int(ptr)
                (err,) = self.rt.cudaMemcpy(self.mem[name], arr.ctypes.data, arr.nbytes,
                                            self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice)
                ptrs.append(self.mem[name])
            return ptrs

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return _Calibrator()


def timing_cache_path(cache_dir: str | os.PathLike) -> Path:
    """The TensorRT timing cache kept beside the engines (one per cache directory)."""
    return Path(cache_dir) / TIMING_CACHE_NAME


# ----------------------------------------------------------------------------------------------
# command line: build engines ahead of time (the `build_only` step), list a cache


def _parse_profile(text: str) -> tuple[str, tuple[tuple[int, ...], ...]]:
    """``x=1x3:4x3:16x3`` -> ("x", ((1, 3), (4, 3), (16, 3))); one shape means min = opt = max."""
    import argparse

    name, sep, shapes = text.partition("=")
    try:
        parts = [tuple(int(d) for d in s.split("x")) for s in shapes.split(":")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad shape profile {text!r}: {exc}") from exc
    if not sep or len(parts) not in (1, 3):
        raise argparse.ArgumentTypeError(f"shape profile must be NAME=MIN:OPT:MAX (e.g. x=1x3:4x3:16x3), got {text!r}")
    return name, tuple(parts * 3 if len(parts) == 1 else parts)


def list_cache(cache_dir: str | os.PathLike) -> list[dict]:
    """One row per ``*.engine`` in ``cache_dir``: file, size, key fields, and whether the engine
    still matches its metadata ("ok" or the corruption reason). Needs no TensorRT."""
    rows = []
    for engine in sorted(Path(cache_dir).glob("*.engine")):
        meta_path = engine.with_name(engine.name + ".json")
        row = {"engine": engine.name, "bytes": engine.stat().st_size}
        try:
            meta, key = read_metadata(meta_path)
            row.update(key.as_dict())
            row["state"] = "ok" if sha256_file(engine) == meta["engine_sha256"] else "corrupt: sha256 differs from metadata"
        except EngineCacheError as exc:
            row["state"] = f"corrupt: {exc}"
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m tps_inference.engine_cache {build,list}``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m tps_inference.engine_cache",
                                 description="Build TensorRT engines ahead of time, or list a cache.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build (or validate) the cached engine of an ONNX model")
    build.add_argument("onnx", type=Path)
    build.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    build.add_argument("--shape", type=_parse_profile, action="append", default=[],
                       help="dynamic input profile NAME=MIN:OPT:MAX, dims joined by x (repeat per input)")
    build.add_argument("--cache", type=Path, default=None, help="default: data/engines")
    build.add_argument("--workspace-mb", type=int, default=1024)
    build.add_argument("--no-rebuild", action="store_true", help="refuse stale/corrupt engines instead")
    build.add_argument("--calibration-cache", type=Path, default=None,
                       help="INT8 of an FP32 graph: the TensorRT calibration cache (made by python -m export all)")
    lst = sub.add_parser("list", help="list cached engines and check them against their metadata")
    lst.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args(argv)
    cache = args.cache or default_cache_dir()
    try:
        if args.cmd == "list":
            rows = list_cache(cache)
            for row in rows:
                print(json.dumps(row, sort_keys=True))
            print(f"{len(rows)} engine(s) in {cache}")
            return 0 if all(r["state"] == "ok" for r in rows) else 1
        from .manifest import trusted_path

        onnx_path = trusted_path(args.onnx)
        shapes = onnx_profile_shapes(onnx_path, dict(args.shape))
        key = current_key(onnx_path, args.precision, shapes, args.calibration_cache)
        builder = tensorrt_builder(args.precision, shapes, args.workspace_mb, calibration_cache=args.calibration_cache,
                                   timing_cache=timing_cache_path(cache))
        engine = get_or_build(onnx_path, cache, key, builder, rebuild=not args.no_rebuild)
        print(f"{engine} (key {key.digest()[:12]})")
        return 0
    except InferenceError as exc:  # missing/untrusted ONNX, no TensorRT, stale engine, ...
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
