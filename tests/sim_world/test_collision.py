"""Oriented-box overlap (SAT) against shapely polygon intersection, and at-fault classes."""

import numpy as np
import pytest
import shapely
from tps_sim.world import classify_collision, obb_overlap
from tps_sim.world.collision import obb_overlap_pairwise

N_RANDOM = 2000
AREA_EPS_M2 = 1e-6


def _poly(box):
    x, y, yaw, length, width = box
    c, s = np.cos(yaw), np.sin(yaw)
    loc = np.array([[0.5, 0.5], [0.5, -0.5], [-0.5, -0.5], [-0.5, 0.5]]) * [length, width]
    return shapely.Polygon(np.column_stack([x + c * loc[:, 0] - s * loc[:, 1],
                                            y + s * loc[:, 0] + c * loc[:, 1]]))


def test_matches_shapely_on_random_boxes():
    rng = np.random.default_rng(42)
    ego = np.array([0.0, 0.0, 0.3, 4.6, 1.9])
    others = np.column_stack([rng.uniform(-6, 6, N_RANDOM), rng.uniform(-6, 6, N_RANDOM),
                              rng.uniform(-np.pi, np.pi, N_RANDOM),
                              rng.uniform(0.3, 12, N_RANDOM), rng.uniform(0.3, 3, N_RANDOM)])
    got = obb_overlap(ego, others)
    ego_poly = _poly(ego)
    want = np.array([ego_poly.intersection(_poly(o)).area > AREA_EPS_M2 for o in others])
    assert got.sum() > 100 and (~got).sum() > 100, "test set must contain both outcomes"
    assert np.array_equal(got, want)


def test_rotated_near_miss_that_aabbs_would_call_a_hit():
    ego = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    # A 2 m square turned 45 deg, diagonally off the ego's front-left corner (2, 1) by d: its
    # axis-aligned bounds (half-extent sqrt 2) overlap the ego for d < 1.414, the box itself
    # only for d < sqrt(2) / 2.
    miss = np.array([2.0 + 1.0, 1.0 + 1.0, np.pi / 4, 2.0, 2.0])
    hit = np.array([2.0 + 0.6, 1.0 + 0.6, np.pi / 4, 2.0, 2.0])
    assert not obb_overlap(ego, miss[None])[0]
    assert obb_overlap(ego, hit[None])[0]


def test_touching_is_not_overlap_and_empty_input():
    ego = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    assert not obb_overlap(ego, np.array([[4.0, 0.0, 0.0, 4.0, 2.0]]))[0]
    assert obb_overlap(ego, np.zeros((0, 5))).shape == (0,)
    m = obb_overlap_pairwise(np.array([ego, ego + [10, 0, 0, 0, 0]]), np.array([ego]))
    assert m.tolist() == [[True], [False]]


@pytest.mark.parametrize(("other_xy", "other_v", "ego_v", "kind", "fault"), [
    ((4.0, 0.0), (0.0, 0.0), (10.0, 0.0), "front", True),      # ran into a stopped car
    ((-4.0, 0.0), (12.0, 0.0), (5.0, 0.0), "rear", False),     # rear-ended
    ((-4.0, 0.0), (0.0, 0.0), (-2.0, 0.0), "rear", True),      # reversed into it
    ((0.0, 2.0), (0.0, -3.0), (10.0, 0.0), "lateral", False),  # other swerved into ego
    ((0.0, 2.0), (10.0, 0.0), (10.0, 1.5), "lateral", True),   # ego swerved into other
    ((4.0, 0.0), (-5.0, 0.0), (0.0, 0.0), "front", False),     # ego stopped
])
def test_classify(other_xy, other_v, ego_v, kind, fault):
    ego = np.array([0.0, 0.0, 0.0, 4.6, 1.9])
    other = np.array([*other_xy, 0.0, 4.5, 1.8])
    info = classify_collision(ego, np.array(ego_v), 7, other, np.array(other_v))
    assert (info.kind, info.ego_at_fault, info.other_id) == (kind, fault, 7)
