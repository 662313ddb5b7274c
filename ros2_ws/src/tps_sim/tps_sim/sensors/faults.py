"""Sensor fault injection, configurable per run.

A :class:`SensorFaultConfig` lists the faults of a run; every fault is off by default and, when
set, active for sim time ``t`` in ``[onset_s, onset_s + duration_s)``. A
:class:`SensorFaultInjector` applies them:

- to the data: ``apply_lidar(t_s, points)`` (blackout, point dropout, NaN/inf points, range bias)
  and ``apply_camera(t_s, image)`` (freeze, black frames);
- to publication timing: ``schedule(t_s)`` returns a :class:`MessageSchedule` (drop this step's
  lidar / camera message, delay sensor messages by N steps, offset the published clock) that the
  bridge applies.

Randomness (which points drop, jitter, message drops) is drawn from a generator seeded by
``(seed, fault, t_s)``, so every method is a pure function of its arguments except
``apply_camera``, which has to remember the last good frame to freeze on. ``active(t_s)`` names
the faults active at ``t_s`` so ground truth can carry ``fault:<name>`` events.

Config as a dict (e.g. from YAML)::

    {"lidar_blackout": {"onset_s": 5.0, "duration_s": 1.0},
     "point_dropout": {"onset_s": 0.0, "fraction": 0.3},
     "message_drop": {"lidar_probability": 0.1}}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

# Generator stream ids (one per randomised fault) so the faults draw independent numbers.
_STREAM = {"point_dropout": 1, "nan_points": 2, "camera_black": 3, "sensor_delay": 4,
           "message_drop": 5}
_TIME_QUANTUM_S = 1e-6  # sim times are keyed to the microsecond for seeding


def _check_number(owner: str, name: str, value: object, lo: float | None = None,
                  hi: float | None = None, lo_open: bool = False, allow_inf: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}.{name} = {value!r}: must be a number")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{owner}.{name} = {value!r}: must be finite")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{owner}.{name} = {value!r}: must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"{owner}.{name} = {value!r}: must be <= {hi}")


@dataclass(frozen=True)
class Fault:
    """A fault window: active for sim time t in [onset_s, onset_s + duration_s) [s]."""

    onset_s: float = 0.0
    duration_s: float = math.inf

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_number(owner, "onset_s", self.onset_s, lo=0.0)
        _check_number(owner, "duration_s", self.duration_s, lo=0.0, lo_open=True,
                      allow_inf=True)

    def active(self, t_s: float) -> bool:
        """True while the fault is on at sim time ``t_s`` [s]."""
        return self.onset_s <= t_s < self.onset_s + self.duration_s


@dataclass(frozen=True)
class PointDropout(Fault):
    """Each lidar point is removed with probability ``fraction`` in [0, 1]."""

    fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("PointDropout", "fraction", self.fraction, lo=0.0, hi=1.0)


NAN_KINDS = ("nan", "inf", "mixed")


@dataclass(frozen=True)
class NanPoints(Fault):
    """A ``fraction`` of lidar points get non-finite x, y, z: ``kind`` nan, inf (+-inf) or mixed.
    The point count is unchanged (a corrupt driver, not a lost return)."""

    fraction: float = 0.1
    kind: str = "nan"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("NanPoints", "fraction", self.fraction, lo=0.0, hi=1.0)
        if self.kind not in NAN_KINDS:
            raise ValueError(f"NanPoints.kind = {self.kind!r}: expected one of {NAN_KINDS}")


@dataclass(frozen=True)
class RangeBias(Fault):
    """Every lidar return is moved ``bias_m`` [m] along its ray (a calibration error).
    Points whose biased range would be <= 0 are removed."""

    bias_m: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("RangeBias", "bias_m", self.bias_m)


@dataclass(frozen=True)
class CameraBlack(Fault):
    """Camera frames are all black, each frame in the window with ``probability`` [0, 1]."""

    probability: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("CameraBlack", "probability", self.probability, lo=0.0, hi=1.0)


@dataclass(frozen=True)
class SensorDelay(Fault):
    """Sensor messages (lidar, camera, camera_info) are published ``steps`` simulation steps
    late, plus a uniform random 0..``jitter_steps`` extra steps per step."""

    steps: int = 1
    jitter_steps: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "jitter_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SensorDelay.{name} = {value!r}: must be an integer >= 0")


@dataclass(frozen=True)
class MessageDrop(Fault):
    """Each step's lidar / camera message is not published with the given probability."""

    lidar_probability: float = 0.1
    camera_probability: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lidar_probability", "camera_probability"):
            _check_number("MessageDrop", name, getattr(self, name), lo=0.0, hi=1.0)


@dataclass(frozen=True)
class ClockJump(Fault):
    """While active, the published clock (and the sensor stamps) are offset by ``offset_s``
    [s] (positive = jump ahead); a permanent jump is an infinite duration (the default)."""

    offset_s: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("ClockJump", "offset_s", self.offset_s)


# Field name in SensorFaultConfig -> fault class.
FAULT_TYPES: dict[str, type[Fault]] = {
    "lidar_blackout": Fault,
    "point_dropout": PointDropout,
    "nan_points": NanPoints,
    "range_bias": RangeBias,
    "camera_freeze": Fault,
    "camera_black": CameraBlack,
    "sensor_delay": SensorDelay,
    "message_drop": MessageDrop,
    "clock_jump": ClockJump,
}


@dataclass(frozen=True)
class SensorFaultConfig:
    """The faults of one run; None = off (the default for all).

    Attributes:
        lidar_blackout: no lidar points at all while active.
        point_dropout: random point removal.
        nan_points: non-finite point coordinates.
        range_bias: constant range offset.
        camera_freeze: the camera repeats the last frame from before the fault.
        camera_black: all-black frames.
        sensor_delay: sensor messages published late (steps, jitter).
        message_drop: sensor messages not published.
        clock_jump: published clock offset.
    """

    lidar_blackout: Fault | None = None
    point_dropout: PointDropout | None = None
    nan_points: NanPoints | None = None
    range_bias: RangeBias | None = None
    camera_freeze: Fault | None = None
    camera_black: CameraBlack | None = None
    sensor_delay: SensorDelay | None = None
    message_drop: MessageDrop | None = None
    clock_jump: ClockJump | None = None

    def __post_init__(self) -> None:
        for name, cls in FAULT_TYPES.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise ValueError(f"SensorFaultConfig.{name}: expected {cls.__name__} or None, "
                                 f"got {type(value).__name__}")

    @classmethod
    def from_dict(cls, values: dict | None) -> SensorFaultConfig:
        """Build from ``{fault_name: {param: value}}``; unknown fault names or parameters raise
        ValueError naming them. A fault given as ``{}`` or ``True`` is on with its defaults;
        ``None`` or ``False`` is off."""
        values = values or {}
        if not isinstance(values, dict):
            raise ValueError(f"sensor faults: expected a mapping, got {type(values).__name__}")
        unknown = sorted(set(values) - set(FAULT_TYPES))
        if unknown:
            raise ValueError(f"sensor faults: unknown fault(s) {unknown}; known: "
                             f"{sorted(FAULT_TYPES)}")
        built = {}
        for name, spec in values.items():
            fault_cls = FAULT_TYPES[name]
            if spec is None or spec is False:
                continue
            if spec is True:
                spec = {}
            if not isinstance(spec, dict):
                raise ValueError(f"sensor faults.{name}: expected a mapping of parameters, got "
                                 f"{spec!r}")
            known = {f.name for f in fields(fault_cls)}
            bad = sorted(set(spec) - known)
            if bad:
                raise ValueError(f"sensor faults.{name}: unknown parameter(s) {bad}; known: "
                                 f"{sorted(known)}")
            spec = dict(spec)
            if "duration_s" in spec and spec["duration_s"] in ("inf", ".inf"):
                spec["duration_s"] = math.inf
            built[name] = fault_cls(**spec)
        return cls(**built)

    def to_dict(self) -> dict:
        """The configured faults as ``{name: {param: value}}`` (inverse of from_dict)."""
        return {name: asdict(getattr(self, name)) for name in FAULT_TYPES
                if getattr(self, name) is not None}

    def configured(self) -> list[str]:
        """Names of the faults that are set (active or not)."""
        return [name for name in FAULT_TYPES if getattr(self, name) is not None]


@dataclass(frozen=True)
class MessageSchedule:
    """What the bridge does with this step's sensor messages.

    Attributes:
        drop_lidar: do not publish this step's point cloud.
        drop_camera: do not publish this step's image (and camera_info).
        delay_steps: publish this step's sensor messages that many steps later (0 = now),
            keeping their original stamps.
        clock_offset_s: add this to the published /clock and to the stamps of this step [s].
        active: names of the faults active at this step.
    """

    drop_lidar: bool = False
    drop_camera: bool = False
    delay_steps: int = 0
    clock_offset_s: float = 0.0
    active: tuple[str, ...] = field(default_factory=tuple)


class SensorFaultInjector:
    """Applies a :class:`SensorFaultConfig`; see the module docstring."""

    def __init__(self, config: SensorFaultConfig | None = None, seed: int = 0) -> None:
        self.config = config if config is not None else SensorFaultConfig()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"SensorFaultInjector.seed = {seed!r}: must be an integer >= 0")
        self.seed = int(seed)
        self._last_good_image: np.ndarray | None = None

    def _rng(self, fault: str, t_s: float) -> np.random.Generator:
        key = int(round(t_s / _TIME_QUANTUM_S)) & 0xFFFF_FFFF_FFFF_FFFF
        return np.random.default_rng([self.seed, _STREAM[fault], key])

    def _on(self, name: str, t_s: float) -> Fault | None:
        fault = getattr(self.config, name)
        return fault if fault is not None and fault.active(t_s) else None

    def active(self, t_s: float) -> list[str]:
        """Names of the faults active at sim time ``t_s`` (ground truth: ``fault:<name>``)."""
        return [name for name in FAULT_TYPES if self._on(name, t_s) is not None]

    # -- lidar ------------------------------------------------------------------------------
    def lidar_mask(self, t_s: float, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kept indices (M,), output points (M, C)) for ``points`` (N, C>=3) at ``t_s``;
        the indices let callers keep per-point labels aligned."""
        pts = np.array(points, copy=True)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ValueError(f"apply_lidar: points must be (N, C>=3), got shape {pts.shape}")
        idx = np.arange(pts.shape[0])
        if self._on("lidar_blackout", t_s):
            return idx[:0], pts[:0]
        dropout = self._on("point_dropout", t_s)
        if dropout is not None and pts.shape[0]:
            keep = self._rng("point_dropout", t_s).random(pts.shape[0]) >= dropout.fraction
            idx, pts = idx[keep], pts[keep]
        bias = self._on("range_bias", t_s)
        if bias is not None and pts.shape[0]:
            xyz = pts[:, :3].astype(np.float64)
            rng_m = np.linalg.norm(xyz, axis=1)
            finite = np.isfinite(rng_m)
            removed = finite & (rng_m + bias.bias_m <= 0.0)
            move = finite & ~removed & (rng_m > 0.0)
            scale = (rng_m[move] + bias.bias_m) / rng_m[move]
            pts[move, :3] = (xyz[move] * scale[:, None]).astype(pts.dtype)
            idx, pts = idx[~removed], pts[~removed]
        nan = self._on("nan_points", t_s)
        if nan is not None and pts.shape[0]:
            gen = self._rng("nan_points", t_s)
            hit = gen.random(pts.shape[0]) < nan.fraction
            if nan.kind == "nan":
                values = np.full(int(hit.sum()), np.nan)
            else:
                signs = np.where(gen.random(int(hit.sum())) < 0.5, -1.0, 1.0)
                values = signs * np.inf
                if nan.kind == "mixed":
                    values[gen.random(values.size) < 0.5] = np.nan
            pts[hit, :3] = values[:, None]
        return idx, pts

    def apply_lidar(self, t_s: float, points: np.ndarray) -> np.ndarray:
        """The faulted copy of ``points`` (N, C>=3: x, y, z[, intensity...]) at sim time
        ``t_s`` [s]; the input is not modified. Unchanged (a copy) when no lidar fault is on."""
        return self.lidar_mask(t_s, points)[1]

    # -- camera -----------------------------------------------------------------------------
    def apply_camera(self, t_s: float, image: np.ndarray) -> np.ndarray:
        """The faulted image (H, W, C) at sim time ``t_s`` [s]; the input is not modified.

        camera_freeze returns the last frame produced before the freeze (the current one when
        the run starts frozen); camera_black returns zeros. Frames are assumed to come in time
        order (one per step)."""
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"apply_camera: image must be (H, W[, C]), got shape {image.shape}")
        if self._on("camera_freeze", t_s):
            if self._last_good_image is None or self._last_good_image.shape != image.shape:
                self._last_good_image = image.copy()
            out = self._last_good_image.copy()
        else:
            out = image.copy()
            self._last_good_image = out.copy()
        black = self._on("camera_black", t_s)
        if black is not None and self._rng("camera_black", t_s).random() < black.probability:
            out = np.zeros_like(out)
        return out

    # -- timing -----------------------------------------------------------------------------
    def schedule(self, t_s: float) -> MessageSchedule:
        """How the sensor messages of the step at sim time ``t_s`` [s] are published."""
        drop_lidar = drop_camera = False
        drop = self._on("message_drop", t_s)
        if drop is not None:
            u = self._rng("message_drop", t_s).random(2)
            drop_lidar = bool(u[0] < drop.lidar_probability)
            drop_camera = bool(u[1] < drop.camera_probability)
        delay_steps = 0
        delay = self._on("sensor_delay", t_s)
        if delay is not None:
            delay_steps = delay.steps
            if delay.jitter_steps:
                delay_steps += int(self._rng("sensor_delay", t_s).integers(0,
                                                                           delay.jitter_steps + 1))
        jump = self._on("clock_jump", t_s)
        offset = float(jump.offset_s) if jump is not None else 0.0
        return MessageSchedule(drop_lidar, drop_camera, delay_steps, offset,
                               tuple(self.active(t_s)))
