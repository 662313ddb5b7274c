"""Unit tests of the detector core: BEV preprocessing, network shapes, decode/NMS, tracker, faults."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from perception_helpers import box_points, ground_points
from tps_perception.faults import FaultInjector, FaultParams
from tps_perception.model import CLASS_NAMES, REG_CHANNELS, CenterNet, NetConfig
from tps_perception.pillars import BEV_CHANNELS, BevGridParams, PreprocessError, points_to_bev
from tps_perception.postprocess import DecodeParams, Detections, circle_nms, decode, encode_targets
from tps_perception.tracker import Tracker, TrackerParams

GRID = BevGridParams()
DEC = DecodeParams(range_m=GRID.range_m, out_cell_m=GRID.cell_m * 2)
OUT_SIZE = GRID.size // 2
DECODE_TOL_M = 1e-3
VEL_TOL_MPS = 0.5
DT_S = 0.1


def _logits(hm: np.ndarray) -> np.ndarray:
    p = np.clip(hm, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


# ---------------------------------------------------------------- preprocessing

def test_bev_shape_and_cell_statistics():
    pts = box_points((10.0, -5.0), (4.5, 1.9, 1.5), 0.3)
    bev = points_to_bev(pts, GRID)
    assert bev.shape == (len(BEV_CHANNELS), GRID.size, GRID.size)
    assert bev.dtype == np.float32
    i = int((10.0 + GRID.range_m) / GRID.cell_m)
    j = int((-5.0 + GRID.range_m) / GRID.cell_m)
    window = bev[:, i - 4:i + 5, j - 4:j + 5]
    assert window[0].max() > 0, "points of the box must land around its cell"
    # highest point of the box is its roof, 1.5 m above ground
    assert window[1].max() * 4.0 == pytest.approx(1.5, abs=0.05)
    assert np.isfinite(bev).all()
    assert bev[0].sum() == 0 or bev[0, :i - 4].sum() == 0, "no points where there is no box"


def test_bev_drops_points_outside_the_grid():
    far = np.array([[80.0, 0.0, -1.0, 0.5], [0.0, -60.0, -1.0, 0.5]], np.float32)
    assert points_to_bev(far, GRID).sum() == 0.0


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 4), np.float32), "empty"),
    (np.zeros((10, 3), np.float32), "shape"),
    (np.array([[1.0, np.nan, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]], np.float32), "NaN"),
])
def test_bev_rejects_bad_clouds(bad, match):
    with pytest.raises(PreprocessError, match=match):
        points_to_bev(bad, GRID)


# ---------------------------------------------------------------- network

def test_network_output_shapes():
    cfg = NetConfig()
    model = CenterNet(cfg).eval()
    with torch.no_grad():
        hm, reg = model(torch.zeros(2, len(BEV_CHANNELS), GRID.size, GRID.size))
    assert hm.shape == (2, len(CLASS_NAMES), OUT_SIZE, OUT_SIZE)
    assert reg.shape == (2, len(REG_CHANNELS), OUT_SIZE, OUT_SIZE)


# ---------------------------------------------------------------- decode / NMS

BOXES = np.array([
    [12.3, -4.1, 0.75, 4.5, 1.9, 1.5, 0.4],
    [-20.7, 8.9, 1.7, 8.0, 2.5, 3.4, -2.0],
    [3.1, 15.2, 0.9, 0.5, 0.5, 1.75, 1.0],
    [30.0, 30.0, 0.85, 1.8, 0.7, 1.7, 3.0],
    [-40.0, -10.0, 1.55, 12.0, 2.55, 3.1, 0.0],
], np.float32)
LABELS = np.array([1, 2, 4, 5, 3], np.uint8)


def test_decode_of_encoded_targets_gives_the_boxes_back():
    hm, reg, mask = encode_targets(BOXES, LABELS, DEC, OUT_SIZE)
    assert (mask == 1).sum() == len(BOXES)
    det = decode(_logits(hm), reg, DecodeParams(**{**DEC.__dict__, "score_threshold": 0.5}))
    assert len(det) == len(BOXES)
    for box, lab in zip(BOXES, LABELS, strict=True):
        k = int(np.argmin(np.linalg.norm(det.boxes[:, :2] - box[:2], axis=1)))
        assert det.labels[k] == lab
        np.testing.assert_allclose(det.boxes[k, :6], box[:6], atol=DECODE_TOL_M)
        assert np.cos(det.boxes[k, 6] - box[6]) == pytest.approx(1.0, abs=1e-6)
        assert det.scores[k] == pytest.approx(1.0, abs=1e-5)


def test_neighbour_cells_regress_the_same_centre():
    """Dense regression: decoding from a cell next to the centre gives the same box centre."""
    hm, reg, mask = encode_targets(BOXES[:1], LABELS[:1], DEC, OUT_SIZE)
    i, j = np.argwhere(mask == 1)[0]
    for di, dj in ((1, 0), (0, -1), (-1, 0)):
        assert 0 < mask[i + di, j + dj] < 1
        x = (i + di + reg[0, i + di, j + dj]) * DEC.out_cell_m - DEC.range_m
        y = (j + dj + reg[1, i + di, j + dj]) * DEC.out_cell_m - DEC.range_m
        assert (x, y) == pytest.approx((BOXES[0, 0], BOXES[0, 1]), abs=DECODE_TOL_M)


def test_score_threshold_and_topk():
    hm, reg, _ = encode_targets(BOXES, LABELS, DEC, OUT_SIZE)
    hm[:, :, :] *= 0.3  # every peak scores 0.3
    assert len(decode(_logits(hm), reg, DecodeParams(**{**DEC.__dict__, "score_threshold": 0.5}))) == 0
    top2 = decode(_logits(hm), reg, DecodeParams(**{**DEC.__dict__, "score_threshold": 0.1, "max_detections": 2}))
    assert len(top2) == 2


def test_circle_nms_suppresses_close_duplicates_only():
    xy = np.array([[0.0, 0.0], [0.5, 0.0], [10.0, 0.0]])
    scores = np.array([0.9, 0.8, 0.7])
    assert sorted(circle_nms(xy, scores, 1.0).tolist()) == [0, 2]
    assert sorted(circle_nms(xy, scores, 0.1).tolist()) == [0, 1, 2]


def test_decode_nms_merges_two_peaks_of_one_car():
    hm = np.full((len(CLASS_NAMES), OUT_SIZE, OUT_SIZE), -10.0, np.float32)
    reg = np.zeros((len(REG_CHANNELS), OUT_SIZE, OUT_SIZE), np.float32)
    reg[3:6] = np.log(np.array([4.5, 1.9, 1.5]))[:, None, None]
    reg[7] = 1.0
    hm[0, 40, 40] = 3.0
    hm[0, 40, 41] = 2.0  # not a 3x3 max: removed by the max-pool
    hm[0, 41, 40] = 2.9  # not a 3x3 max either
    hm[0, 40, 42] = 2.5  # a second 3x3 max 3.2 m away: beyond the 2 m car NMS radius, kept
    hm[3, 40, 41] = 2.0  # a pedestrian beside it: a different class is never suppressed
    det = decode(hm, reg, DEC)
    assert sorted(det.labels.tolist()) == [1, 1, 4]


# ---------------------------------------------------------------- tracker

def _det(xy: list[tuple[float, float]], label: int = 1) -> Detections:
    n = len(xy)
    boxes = np.zeros((n, 7), np.float32)
    boxes[:, :2] = xy
    boxes[:, 3:6] = (4.5, 1.9, 1.5)
    return Detections(boxes, np.full(n, 0.9, np.float32), np.full(n, label, np.uint8))


def test_tracker_keeps_ids_and_estimates_constant_velocity():
    tr = Tracker(TrackerParams())
    v1, v2 = np.array([10.0, 0.0]), np.array([-3.0, 2.0])
    rng = np.random.default_rng(0)
    ids = []
    for k in range(30):
        t = k * DT_S
        p1 = np.array([5.0, 3.0]) + v1 * t + rng.normal(0, 0.05, 2)
        p2 = np.array([-10.0, -8.0]) + v2 * t + rng.normal(0, 0.05, 2)
        res = tr.update(_det([tuple(p1), tuple(p2)]), t)
        ids.append(res.ids.tolist())
    assert all(i == ids[0] for i in ids) and len(set(ids[0])) == 2 and 0 not in ids[0]
    np.testing.assert_allclose(res.velocities[0], v1, atol=VEL_TOL_MPS)
    np.testing.assert_allclose(res.velocities[1], v2, atol=VEL_TOL_MPS)
    assert res.velocity_is_relative


def test_tracker_over_ground_velocity_with_moving_ego():
    """Ego drives 15 m/s along map x with yaw 0.5; a parked car must come out with ~0 velocity,
    a car driving with the ego with the ego's velocity (in base_link axes)."""
    tr = Tracker(TrackerParams())
    yaw = 0.5
    ego_v = 15.0 * np.array([np.cos(yaw), np.sin(yaw)])
    c, s = np.cos(yaw), np.sin(yaw)
    for k in range(30):
        t = k * DT_S
        ego = np.array([ego_v[0] * t, ego_v[1] * t, yaw])
        parked_map = np.array([40.0, 30.0])
        d = parked_map - ego[:2]
        parked_bl = (c * d[0] + s * d[1], -s * d[0] + c * d[1])
        res = tr.update(_det([parked_bl, (8.0, 0.0)]), t, ego)
    assert not res.velocity_is_relative
    np.testing.assert_allclose(res.velocities[0], [0.0, 0.0], atol=VEL_TOL_MPS)
    np.testing.assert_allclose(res.velocities[1], [15.0, 0.0], atol=VEL_TOL_MPS)


def test_tracker_gives_a_new_id_after_a_track_is_lost():
    tr = Tracker(TrackerParams(max_misses=2))
    first = tr.update(_det([(0.0, 0.0)]), 0.0).ids[0]
    for k in range(1, 5):
        tr.update(Detections.empty(), k * DT_S)
    again = tr.update(_det([(0.0, 0.0)]), 5 * DT_S).ids[0]
    assert first != again and again != 0


# ---------------------------------------------------------------- faults

def _three() -> tuple[Detections, np.ndarray, np.ndarray]:
    d = _det([(5.0, 0.0), (10.0, 2.0), (20.0, -3.0)])
    return d, np.array([1, 2, 3], np.uint32), np.zeros((3, 2), np.float32)


def test_no_fault_is_inactive_and_identity():
    d, ids, v = _three()
    r = FaultInjector(FaultParams()).apply(d, ids, v)
    assert not r.active and r.description == ""
    np.testing.assert_array_equal(r.detections.boxes, d.boxes)


def test_blackout_removes_everything():
    r = FaultInjector(FaultParams(blackout=True)).apply(*_three())
    assert r.active and len(r.detections) == 0 and "blackout" in r.description


def test_drop_rate_one_drops_all_and_zero_noise_keeps_boxes():
    r = FaultInjector(FaultParams(drop_rate=1.0)).apply(*_three())
    assert r.active and len(r.detections) == 0 and r.dropped == 3


def test_phantoms_and_noise_are_seeded():
    p = FaultParams(phantom_rate=5.0, position_noise_m=0.5, heading_noise_rad=0.2, seed=7)
    a = FaultInjector(p).apply(*_three())
    b = FaultInjector(p).apply(*_three())
    assert a.phantoms > 0 and len(a.detections) == 3 + a.phantoms
    np.testing.assert_array_equal(a.detections.boxes, b.detections.boxes)
    d, _, _ = _three()
    moved = np.linalg.norm(a.detections.boxes[:3, :2] - d.boxes[:, :2], axis=1)
    assert (moved > 0).all()
    assert (np.linalg.norm(a.detections.boxes[3:, :2], axis=1) <= p.phantom_range_m).all()
    assert (a.track_ids[3:] == 0).all()


def test_fault_params_out_of_range_name_the_parameter():
    with pytest.raises(ValueError, match="drop_rate"):
        FaultParams(drop_rate=1.5)


def test_detector_end_to_end_on_a_cloud():
    """Untrained weights: the pipeline runs, timings are filled, output arrays are consistent."""
    from tps_perception.backends import torch_backend
    from tps_perception.detector import Detector, DetectorParams

    det = Detector(DetectorParams(), torch_backend(CenterNet(NetConfig()).eval(), threads=1))
    pts = np.concatenate([ground_points(), box_points((10.0, 0.0), (4.5, 1.9, 1.5), 0.0)])
    res = det.run(pts, 0.0)
    assert len(res.track_ids) == len(res.detections) == len(res.velocities)
    assert res.preprocess_ms > 0 and res.network_ms > 0 and res.postprocess_ms > 0


def test_align_headings_turns_backward_boxes_of_moving_agents_only():
    from tps_perception.tracker import align_headings

    yaw = np.array([0.0, np.pi - 0.1, np.pi, 0.5, -3.0])
    vel = np.array([[10.0, 0.0], [10.0, 0.0], [0.5, 0.0], [0.0, 5.0], [-3.0, 0.0]])
    out = align_headings(yaw, vel, 2.0)
    # along the velocity: kept; backwards and moving: turned by pi; slow: kept
    np.testing.assert_allclose(out, [0.0, -0.1, np.pi, 0.5, -3.0], atol=1e-6)
    assert np.all((out > -np.pi) & (out <= np.pi))
    np.testing.assert_allclose(align_headings(yaw, vel, 0.0), yaw.astype(np.float32), atol=1e-6)
