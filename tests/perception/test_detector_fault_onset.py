"""Detector faults with an onset (tps_perception.faults, issue 15's fault matrix): frames stamped
before ``onset_s`` (or after ``onset_s + duration_s``) pass untouched and unmarked, frames inside
the window are faulted; seeded; bad windows and node parameters are refused naming the parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from perception_helpers import REPO
from tps_common.params import ParameterError, load_schema, validate
from tps_perception.faults import FaultInjector, FaultParams
from tps_perception.postprocess import Detections

FRAMES_S = [round(0.1 * k, 1) for k in range(60)]   # 6 s of 10-Hz lidar frames


def _frame(k: int) -> tuple[Detections, np.ndarray, np.ndarray]:
    """Three cars, moving a little from frame to frame."""
    xy = np.array([(5.0 + 0.3 * k, 0.0), (10.0, 2.0 + 0.1 * k), (20.0, -3.0)], np.float32)
    boxes = np.zeros((3, 7), np.float32)
    boxes[:, :2] = xy
    boxes[:, 3:6] = (4.5, 1.9, 1.5)
    boxes[:, 6] = 0.1 * k
    det = Detections(boxes, np.full(3, 0.9, np.float32), np.ones(3, np.uint8))
    return det, np.array([1, 2, 3], np.uint32), np.full((3, 2), 0.5, np.float32)


def _run(params: FaultParams) -> list:
    inj = FaultInjector(params)
    return [inj.apply(*_frame(k), stamp_s=t) for k, t in enumerate(FRAMES_S)]


NOISY = dict(phantom_rate=3.0, position_noise_m=0.8, heading_noise_rad=0.2, drop_rate=0.3, seed=11)


def test_frames_before_the_onset_are_untouched_and_unmarked():
    out = _run(FaultParams(**NOISY, onset_s=2.0))
    for k, (t, r) in enumerate(zip(FRAMES_S, out, strict=True)):
        det, ids, vel = _frame(k)
        if t < 2.0:
            assert not r.active and r.description == "" and r.dropped == 0 and r.phantoms == 0, t
            np.testing.assert_array_equal(r.detections.boxes, det.boxes)
            np.testing.assert_array_equal(r.track_ids, ids)
            np.testing.assert_array_equal(r.velocities, vel)
        else:
            assert r.active and "from 2 s" in r.description, t
    after = [(k, r) for k, (t, r) in enumerate(zip(FRAMES_S, out, strict=True)) if t >= 2.0]
    # the faults really act after the onset: detections dropped, phantoms added, poses moved
    assert sum(r.phantoms for _, r in after) > 0 and sum(r.dropped for _, r in after) > 0
    kept = 0
    for k, r in after:
        det, ids, _ = _frame(k)
        for box, tid in zip(r.detections.boxes, r.track_ids, strict=True):
            if tid:   # a real detection (phantoms have id 0): its pose is noisy
                ref = det.boxes[list(ids).index(tid)]
                assert np.linalg.norm(box[:2] - ref[:2]) > 0 and box[6] != ref[6]
                kept += 1
    assert kept > 0


def test_blackout_only_inside_the_window():
    out = _run(FaultParams(blackout=True, onset_s=1.0, duration_s=2.0))
    for t, r in zip(FRAMES_S, out, strict=True):
        inside = 1.0 <= t < 3.0
        assert r.active == inside, t
        assert len(r.detections) == (0 if inside else 3), t


def test_onset_is_seeded_and_pre_onset_frames_draw_no_random_numbers():
    a = _run(FaultParams(**NOISY, onset_s=2.0))
    b = _run(FaultParams(**NOISY, onset_s=2.0))
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra.detections.boxes, rb.detections.boxes)
    # an injector that only ever saw the frames from the onset on faults them identically
    inj = FaultInjector(FaultParams(**NOISY, onset_s=2.0))
    late = [inj.apply(*_frame(k), stamp_s=t) for k, t in enumerate(FRAMES_S) if t >= 2.0]
    for ra, rl in zip([r for t, r in zip(FRAMES_S, a, strict=True) if t >= 2.0], late, strict=True):
        np.testing.assert_array_equal(ra.detections.boxes, rl.detections.boxes)
    # another seed faults differently
    c = _run(FaultParams(**dict(NOISY, seed=12), onset_s=2.0))
    assert any(not np.array_equal(ra.detections.boxes, rc.detections.boxes)
               for ra, rc in zip(a[20:], c[20:], strict=True))


def test_default_window_is_every_frame_and_no_stamp_counts_as_inside():
    p = FaultParams(drop_rate=1.0)
    assert p.onset_s == 0.0 and math.isinf(p.duration_s)
    assert FaultInjector(p).apply(*_frame(0), stamp_s=0.0).active
    assert FaultInjector(p).apply(*_frame(0)).active        # offline callers without a stamp


@pytest.mark.parametrize("kwargs, name", [
    ({"onset_s": -1.0}, "onset_s"), ({"onset_s": math.nan}, "onset_s"), ({"onset_s": math.inf}, "onset_s"),
    ({"duration_s": 0.0}, "duration_s"), ({"duration_s": -2.0}, "duration_s"), ({"duration_s": math.nan}, "duration_s"),
])
def test_bad_window_names_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FaultParams(blackout=True, **kwargs)


SCHEMA = load_schema("perception_node")


@pytest.mark.parametrize("name, value", [
    ("fault_onset_s", -0.5), ("fault_duration_s", -1.0), ("fault_onset_s", "soon"), ("fault_duration_s", math.inf),
])
def test_bad_onset_parameters_name_the_parameter(name, value):
    with pytest.raises(ParameterError, match=name):
        validate({name: value}, SCHEMA)


def test_param_file_ships_the_onset_parameters_off():
    values = yaml.safe_load((REPO / "config" / "perception_node.param.yaml").read_text())["/**"]["ros__parameters"]
    out = validate(values, SCHEMA)
    assert out["fault_onset_s"] == 0.0 and out["fault_duration_s"] == 0.0
