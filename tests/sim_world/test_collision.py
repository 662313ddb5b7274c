"""The world's contact test (``tps_common.geometry.boxes_overlap``, which ``SimWorld`` and the
clutter placement call) against shapely polygon intersection on random boxes. The at-fault
classification of contacts is the evaluation's (tests/eval/test_eval_metrics.py)."""

import numpy as np
import shapely
from tps_common.geometry import boxes_overlap

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
    got = boxes_overlap(ego, others)
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
    assert not boxes_overlap(ego, miss[None])[0]
    assert boxes_overlap(ego, hit[None])[0]


def test_touching_is_contact_and_empty_input():
    """Touching boxes (zero-area contact) count as contact: the conservative reading for a
    safety check (the world's own test called it no contact until issue 10; measure zero)."""
    ego = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    assert boxes_overlap(ego, np.array([[4.0, 0.0, 0.0, 4.0, 2.0]]))[0]
    assert not boxes_overlap(ego, np.array([[4.0 + 1e-9, 0.0, 0.0, 4.0, 2.0]]))[0]
    assert boxes_overlap(ego, np.zeros((0, 5))).shape == (0,)
