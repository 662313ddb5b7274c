"""Sensor faults: each does what it says inside its window and nothing outside it or when off;
determinism; configuration errors name the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tps_sim.sensors.faults import (
    FAULT_TYPES,
    CameraBlack,
    ClockJump,
    Fault,
    MessageDrop,
    MessageSchedule,
    NanPoints,
    PointDropout,
    RangeBias,
    SensorDelay,
    SensorFaultConfig,
    SensorFaultInjector,
)

DT_S = 0.1
N_POINTS = 20_000
ONSET_S, DURATION_S = 1.0, 0.5
INSIDE_S, BEFORE_S, AFTER_S = 1.2, 0.9, 1.5  # 1.5 = onset + duration: the window is half-open
BINOMIAL_SIGMAS = 4.0


def points(seed: int = 0) -> np.ndarray:
    gen = np.random.default_rng(seed)
    pts = np.empty((N_POINTS, 4), np.float32)
    pts[:, :3] = gen.uniform(-50, 50, (N_POINTS, 3))
    pts[:, 3] = gen.uniform(0, 1, N_POINTS)
    return pts


def image(value: int = 0) -> np.ndarray:
    img = np.zeros((36, 64, 3), np.uint8)
    img[:] = (value * 37 % 256, value * 11 % 256, 200)
    img[5:10, 5:10] = 255
    return img


def window(cls: type[Fault], **kw: object) -> Fault:
    return cls(onset_s=ONSET_S, duration_s=DURATION_S, **kw)


def assert_binomial(count: int, n: int, p: float) -> None:
    assert abs(count - n * p) <= BINOMIAL_SIGMAS * math.sqrt(n * p * (1 - p)) + 1


def test_nothing_happens_when_off() -> None:
    inj = SensorFaultInjector(SensorFaultConfig(), seed=3)
    pts = points()
    for t in np.arange(0.0, 3.0, DT_S):
        out = inj.apply_lidar(t, pts)
        np.testing.assert_array_equal(out, pts)
        assert out is not pts
        img = image(int(t * 10))
        np.testing.assert_array_equal(inj.apply_camera(t, img), img)
        assert inj.schedule(t) == MessageSchedule()
        assert inj.active(t) == []
    assert SensorFaultConfig.from_dict({}).configured() == []
    assert SensorFaultConfig.from_dict(None) == SensorFaultConfig()


def test_faults_are_off_outside_their_window() -> None:
    config = SensorFaultConfig(**{name: window(cls) for name, cls in FAULT_TYPES.items()})
    inj = SensorFaultInjector(config, seed=1)
    pts = points()
    for t in (BEFORE_S, AFTER_S):
        np.testing.assert_array_equal(inj.apply_lidar(t, pts), pts)
        np.testing.assert_array_equal(inj.apply_camera(t, image(7)), image(7))
        assert inj.schedule(t) == MessageSchedule()
        assert inj.active(t) == []
    assert inj.active(INSIDE_S) == list(FAULT_TYPES)
    assert inj.schedule(INSIDE_S).active == tuple(FAULT_TYPES)


def test_lidar_blackout() -> None:
    inj = SensorFaultInjector(SensorFaultConfig(lidar_blackout=window(Fault)))
    out = inj.apply_lidar(INSIDE_S, points())
    assert out.shape == (0, 4) and out.dtype == np.float32
    assert inj.active(INSIDE_S) == ["lidar_blackout"]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.9, 1.0])
def test_point_dropout_fraction(fraction: float) -> None:
    inj = SensorFaultInjector(SensorFaultConfig(point_dropout=window(PointDropout,
                                                                     fraction=fraction)), seed=5)
    pts = points()
    idx, out = inj.lidar_mask(INSIDE_S, pts)
    assert_binomial(N_POINTS - len(out), N_POINTS, fraction)
    np.testing.assert_array_equal(out, pts[idx])  # survivors are unchanged, in order


@pytest.mark.parametrize("kind", ["nan", "inf", "mixed"])
def test_nan_points(kind: str) -> None:
    fraction = 0.2
    inj = SensorFaultInjector(SensorFaultConfig(nan_points=window(NanPoints, fraction=fraction,
                                                                  kind=kind)), seed=2)
    pts = points()
    out = inj.apply_lidar(INSIDE_S, pts)
    assert out.shape == pts.shape
    bad = ~np.isfinite(out[:, :3]).all(axis=1)
    assert_binomial(int(bad.sum()), N_POINTS, fraction)
    assert np.all(~np.isfinite(out[bad, :3]))            # whole xyz corrupted
    np.testing.assert_array_equal(out[~bad], pts[~bad])   # the rest untouched
    np.testing.assert_array_equal(out[:, 3], pts[:, 3])   # intensity untouched
    n_nan = int(np.isnan(out[bad, 0]).sum())
    if kind == "nan":
        assert n_nan == bad.sum()
    elif kind == "inf":
        assert n_nan == 0 and np.any(out[bad, 0] > 0) and np.any(out[bad, 0] < 0)
    else:
        assert 0 < n_nan < bad.sum()


@pytest.mark.parametrize("bias_m", [0.7, -2.0])
def test_range_bias(bias_m: float) -> None:
    inj = SensorFaultInjector(SensorFaultConfig(range_bias=window(RangeBias, bias_m=bias_m)))
    pts = points()
    pts[:10, :3] *= 1e-3  # a few returns nearer than |bias|
    idx, out = inj.lidar_mask(INSIDE_S, pts)
    before = np.linalg.norm(pts[idx, :3].astype(np.float64), axis=1)
    after = np.linalg.norm(out[:, :3].astype(np.float64), axis=1)
    np.testing.assert_allclose(after - before, bias_m, atol=1e-4)
    # Directions are kept.
    np.testing.assert_allclose(out[:, :3] / after[:, None], pts[idx, :3] / before[:, None],
                               atol=1e-5)
    removed = np.setdiff1d(np.arange(N_POINTS), idx)
    assert np.all(np.linalg.norm(pts[removed, :3], axis=1) + bias_m <= 1e-6)
    if bias_m < 0:
        assert removed.size > 0


def test_camera_freeze_repeats_the_last_frame_before_the_fault() -> None:
    inj = SensorFaultInjector(SensorFaultConfig(camera_freeze=window(Fault)))
    outputs = {}
    for step in range(25):
        t = round(step * DT_S, 6)
        outputs[t] = inj.apply_camera(t, image(step))
    last_before = image(9)  # t = 0.9
    for t, out in outputs.items():
        if ONSET_S <= t < ONSET_S + DURATION_S:
            np.testing.assert_array_equal(out, last_before)
        else:
            np.testing.assert_array_equal(out, image(int(round(t / DT_S))))


def test_camera_black_frames() -> None:
    inj = SensorFaultInjector(SensorFaultConfig(camera_black=window(CameraBlack)))
    assert not inj.apply_camera(INSIDE_S, image(3)).any()
    flicker = SensorFaultInjector(SensorFaultConfig(camera_black=CameraBlack(probability=0.3)),
                                  seed=4)
    n_steps = 2000
    black = sum(not flicker.apply_camera(k * DT_S, image(k)).any() for k in range(n_steps))
    assert_binomial(black, n_steps, 0.3)


def test_sensor_delay_and_jitter() -> None:
    steps, jitter = 2, 3
    inj = SensorFaultInjector(SensorFaultConfig(sensor_delay=SensorDelay(steps=steps,
                                                                         jitter_steps=jitter)),
                              seed=8)
    delays = [inj.schedule(k * DT_S).delay_steps for k in range(400)]
    assert set(delays) == set(range(steps, steps + jitter + 1))
    fixed = SensorFaultInjector(SensorFaultConfig(sensor_delay=window(SensorDelay, steps=4)))
    assert fixed.schedule(INSIDE_S).delay_steps == 4
    assert fixed.schedule(AFTER_S).delay_steps == 0


def test_dropped_messages() -> None:
    inj = SensorFaultInjector(SensorFaultConfig(message_drop=MessageDrop(
        lidar_probability=0.2, camera_probability=0.6)), seed=6)
    n_steps = 3000
    schedules = [inj.schedule(k * DT_S) for k in range(n_steps)]
    assert_binomial(sum(s.drop_lidar for s in schedules), n_steps, 0.2)
    assert_binomial(sum(s.drop_camera for s in schedules), n_steps, 0.6)


def test_clock_jump() -> None:
    inj = SensorFaultInjector(SensorFaultConfig(clock_jump=window(ClockJump, offset_s=-0.4)))
    assert inj.schedule(INSIDE_S).clock_offset_s == -0.4
    assert inj.schedule(BEFORE_S).clock_offset_s == 0.0
    permanent = SensorFaultInjector(SensorFaultConfig(clock_jump=ClockJump(onset_s=2.0,
                                                                           offset_s=5.0)))
    assert permanent.schedule(1e6).clock_offset_s == 5.0


def test_deterministic_given_seed_and_input_not_modified() -> None:
    config = SensorFaultConfig.from_dict({
        "point_dropout": {"fraction": 0.3}, "nan_points": {"fraction": 0.1, "kind": "mixed"},
        "message_drop": {}, "sensor_delay": {"steps": 1, "jitter_steps": 2}})
    pts = points()
    copy = pts.copy()
    a = SensorFaultInjector(config, seed=11)
    b = SensorFaultInjector(config, seed=11)
    c = SensorFaultInjector(config, seed=12)
    np.testing.assert_array_equal(a.apply_lidar(0.5, pts), b.apply_lidar(0.5, pts))
    np.testing.assert_array_equal(a.apply_lidar(0.5, pts), a.apply_lidar(0.5, pts))  # pure
    assert not np.array_equal(a.apply_lidar(0.5, pts), c.apply_lidar(0.5, pts), equal_nan=True)
    assert not np.array_equal(a.apply_lidar(0.5, pts), a.apply_lidar(0.6, pts), equal_nan=True)
    assert [a.schedule(k * DT_S) for k in range(50)] == [b.schedule(k * DT_S) for k in range(50)]
    np.testing.assert_array_equal(pts, copy)


def test_config_round_trip_and_errors_name_the_field() -> None:
    spec = {"lidar_blackout": {"onset_s": 3.0, "duration_s": 1.0},
            "camera_black": {"probability": 0.5}, "clock_jump": True, "range_bias": None}
    config = SensorFaultConfig.from_dict(spec)
    assert config.configured() == ["lidar_blackout", "camera_black", "clock_jump"]
    assert SensorFaultConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="lidar_brownout"):
        SensorFaultConfig.from_dict({"lidar_brownout": {}})
    with pytest.raises(ValueError, match="fractoin"):
        SensorFaultConfig.from_dict({"point_dropout": {"fractoin": 0.2}})
    with pytest.raises(ValueError, match="fraction"):
        SensorFaultConfig.from_dict({"point_dropout": {"fraction": 1.5}})
    with pytest.raises(ValueError, match="duration_s"):
        SensorFaultConfig.from_dict({"camera_freeze": {"duration_s": 0.0}})
    with pytest.raises(ValueError, match="onset_s"):
        Fault(onset_s=-1.0)
    with pytest.raises(ValueError, match="kind"):
        NanPoints(kind="zero")
    with pytest.raises(ValueError, match="steps"):
        SensorDelay(steps=-1)
    with pytest.raises(ValueError, match="point_dropout"):
        SensorFaultConfig(point_dropout=RangeBias())
    with pytest.raises(ValueError, match="points"):
        SensorFaultInjector().apply_lidar(0.0, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="seed"):
        SensorFaultInjector(seed=-1)
