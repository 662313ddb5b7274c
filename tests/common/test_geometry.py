"""tps_common.geometry: the project's one copy of box, angle and transform geometry."""

import math

import numpy as np
import pytest
from tps_common import geometry as G

RNG_SEED = 7


def test_corner_order_front_left_first():
    c = G.box_corners([0.0, 0.0], 0.0, 4.0, 2.0)[0]
    np.testing.assert_allclose(c, [[2, 1], [2, -1], [-2, -1], [-2, 1]])


def test_corners_rotate_with_yaw():
    c = G.box_corners([[1.0, 2.0]], [math.pi / 2], [4.0], [2.0])[0]
    np.testing.assert_allclose(c, [[0, 4], [2, 4], [2, 0], [0, 0]], atol=1e-12)


@pytest.mark.parametrize("dx, expected", [(3.9, True), (4.0, True), (4.1, False)])
def test_overlap_boundary_counts_as_contact(dx, expected):
    a = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    b = np.array([[dx, 0.0, 0.0, 4.0, 2.0]])
    assert G.boxes_overlap(a, b)[0] == expected


def test_overlap_rotated_diamond_corner_gap():
    # A 45-degree square whose corner points at the box's corner: the axis-aligned bounds
    # overlap but the shapes do not (only a rotated axis separates them).
    a = np.array([0.0, 0.0, 0.0, 2.0, 2.0])
    b = np.array([[2.5, 2.5, math.pi / 4, 2.0, 2.0]])
    assert not G.boxes_overlap(a, b)[0]
    b_close = np.array([[1.6, 1.6, math.pi / 4, 2.0, 2.0]])
    assert G.boxes_overlap(a, b_close)[0]


def test_overlap_matches_dense_point_sampling():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(200):
        a = np.array([0, 0, rng.uniform(-3, 3), rng.uniform(1, 5), rng.uniform(1, 3)])
        b = np.array([rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-3, 3),
                      rng.uniform(1, 5), rng.uniform(1, 3)])
        sat = G.boxes_overlap(a, b[None])[0]
        # dense samples of b inside a (or a inside b) prove an overlap
        u = rng.uniform(-0.5, 0.5, size=(4000, 2))
        pts_b = G.to_global(u * b[3:5], b[:2], b[2])
        pts_a = G.to_global(u * a[3:5], a[:2], a[2])
        sampled = (G.points_in_footprint(pts_b, a[:2], a[2], a[3], a[4]).any()
                   or G.points_in_footprint(pts_a, b[:2], b[2], b[3], b[4]).any())
        if sampled:
            assert sat


def test_points_in_footprint_with_margin():
    pts = np.array([[2.05, 0.0], [0.0, 1.2], [3.0, 0.0]])
    inside = G.points_in_footprint(pts, (0.0, 0.0), 0.0, 4.0, 2.0, margin_m=0.25)
    assert inside.tolist() == [True, True, False]


def test_segment_against_polygons():
    polys = G.box_corners([[5.0, 0.0], [5.0, 5.0]], 0.0, 2.0, 2.0)
    hit = G.segment_intersects_polygons([0.0, 0.0], [10.0, 0.0], polys)
    assert hit.tolist() == [True, False]


@pytest.mark.parametrize("yaw", [-3.0, -1.0, 0.0, 0.5, 3.1])
def test_yaw_quaternion_round_trip(yaw):
    assert G.quaternion_to_yaw(*G.yaw_to_quaternion(yaw)) == pytest.approx(yaw)


def test_rpy_quaternion_matrix_agree():
    roll, pitch, yaw = 0.1, math.radians(2.0), math.radians(1.0)
    q = G.rpy_to_quaternion(roll, pitch, yaw)
    assert G.quaternion_to_rpy(*q) == pytest.approx((roll, pitch, yaw))
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    np.testing.assert_allclose(G.quaternion_to_matrix(*q), rz @ ry @ rx, atol=1e-12)


def test_bad_quaternion_is_refused():
    with pytest.raises(ValueError, match="not a rotation"):
        G.quaternion_to_matrix(0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="not a rotation"):
        G.quaternion_to_matrix(float("nan"), 0.0, 0.0, 1.0)


def test_wrap_angle_range():
    a = np.array([-7.0, -math.pi, 0.0, math.pi, 7.0])
    w = G.wrap_angle(a)
    assert np.all(w >= -math.pi) and np.all(w < math.pi)
    np.testing.assert_allclose(np.cos(w), np.cos(a))
    assert G.wrap_angle(math.pi) == pytest.approx(-math.pi)


def test_local_global_round_trip_and_pose_algebra():
    rng = np.random.default_rng(RNG_SEED)
    pts = rng.normal(size=(10, 2))
    origin, yaw = (3.0, -2.0), 0.7
    np.testing.assert_allclose(G.to_global(G.to_local(pts, origin, yaw), origin, yaw), pts)
    a, b = (1.0, 2.0, 0.5), (3.0, -1.0, -1.2)
    ab = G.compose_poses(a, b)
    back = G.compose_poses(G.invert_pose(a), ab)
    np.testing.assert_allclose(back, b, atol=1e-12)
    assert G.bearing((0.0, 0.0), math.pi / 2, np.array([[0.0, 5.0]]))[0] == pytest.approx(0.0)
    np.testing.assert_allclose(G.rotate_vectors(np.array([[1.0, 0.0]]), math.pi / 2), [[0.0, 1.0]],
                               atol=1e-12)
