"""tps_common.frames: rigid transforms, the transform tree, configured static transforms,
extrinsic resolution (ROS-free)."""

from __future__ import annotations

import array
import math

import numpy as np
import pytest
from tps_common.frames import (
    ORIGIN_CONFIGURED,
    ORIGIN_TF,
    ORIGIN_TF_STATIC,
    ExtrinsicResolver,
    FrameLookupError,
    RigidTransform,
    TransformBuffer,
    parse_static_transform,
)
from tps_common.geometry import quaternion_to_matrix, rpy_to_quaternion
from tps_common.params import ParameterError

TOL = 1e-12
# float32 point clouds: relative error of one float32 rounding on coordinates up to ~100 m.
FLOAT32_TOL_M = 1e-4
RNG_SEED = 7


def random_transform(rng: np.random.Generator) -> RigidTransform:
    rpy = rng.uniform([-math.pi, -math.pi / 2, -math.pi], [math.pi, math.pi / 2, math.pi])
    return RigidTransform.from_xyz_rpy(rng.uniform(-5.0, 5.0, 3), rpy)


# -- RigidTransform -------------------------------------------------------------------------------
def test_zero_angles_give_an_exact_identity_rotation():
    t = RigidTransform.from_xyz_rpy((0.0, 0.0, 1.8))
    assert np.array_equal(t.rotation, np.eye(3))
    assert t.is_pure_translation() and t.is_yaw_only()
    pts = np.array([[1.0, 2.0, 3.0, 0.5]], np.float32)
    out = t.apply(pts)
    assert out.dtype == np.float32 and np.array_equal(out, np.array([[1.0, 2.0, 4.8, 0.5]], np.float32))


def test_rpy_convention_rep103():
    # yaw +90 deg: x -> +y; pitch > 0 tilts +x down (nose down); roll > 0: +y -> +z
    yaw = RigidTransform.from_xyz_rpy((0, 0, 0), (0.0, 0.0, math.pi / 2))
    assert np.allclose(yaw.apply(np.array([[1.0, 0.0, 0.0]])), [[0.0, 1.0, 0.0]], atol=TOL)
    pitch = RigidTransform.from_xyz_rpy((0, 0, 0), (0.0, 0.1, 0.0))
    assert pitch.apply(np.array([[1.0, 0.0, 0.0]]))[0, 2] < 0.0
    roll = RigidTransform.from_xyz_rpy((0, 0, 0), (0.1, 0.0, 0.0))
    assert roll.apply(np.array([[0.0, 1.0, 0.0]]))[0, 2] > 0.0
    assert yaw.is_yaw_only() and not yaw.is_pure_translation()
    assert not pitch.is_yaw_only() and not roll.is_yaw_only()


def test_rpy_and_quaternion_round_trip():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(50):
        rpy = rng.uniform([-3.0, -1.5, -3.0], [3.0, 1.5, 3.0])
        t = RigidTransform.from_xyz_rpy((1.0, 2.0, 3.0), rpy)
        assert np.allclose(t.rpy, rpy, atol=1e-9)
        q = rpy_to_quaternion(*rpy)
        sign = 1.0 if q[3] >= 0 else -1.0
        assert np.allclose(t.quaternion, np.array(q) * sign, atol=1e-12)
        again = RigidTransform.from_xyz_quaternion(t.translation, t.quaternion)
        assert again.almost_equal(t)
        assert np.allclose(parse_static_transform("p", t.to_xyz_rpy()).matrix, t.matrix, atol=1e-12)


def test_quaternion_is_normalised_and_bad_ones_refused():
    t = RigidTransform.from_xyz_quaternion((0, 0, 0), (0.0, 0.0, 2.0, 2.0))  # 90 deg yaw, norm 2.83
    assert np.allclose(t.rotation, quaternion_to_matrix(0, 0, math.sqrt(0.5), math.sqrt(0.5)))
    with pytest.raises(ValueError, match="not a rotation"):
        RigidTransform.from_xyz_quaternion((0, 0, 0), (0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="not a rotation"):
        RigidTransform(np.diag([1.0, 1.0, -1.0]), np.zeros(3))  # a reflection
    with pytest.raises(ValueError, match="not finite"):
        RigidTransform(np.eye(3), (0.0, math.nan, 0.0))


def test_compose_inverse_and_matrix_agree():
    rng = np.random.default_rng(RNG_SEED)
    a, b, c = (random_transform(rng) for _ in range(3))
    assert np.allclose((a @ b).matrix, a.matrix @ b.matrix, atol=TOL)
    assert ((a @ b) @ c).almost_equal(a @ (b @ c))
    assert (a @ a.inverse()).almost_equal(RigidTransform.identity())
    assert np.allclose(a.inverse().matrix, np.linalg.inv(a.matrix), atol=TOL)
    assert RigidTransform.from_matrix(a.matrix).almost_equal(a)
    pts = rng.uniform(-50.0, 50.0, (100, 3))
    assert np.allclose(a.inverse().apply(a.apply(pts)), pts, atol=1e-9)
    assert np.allclose((a @ b).apply(pts), a.apply(b.apply(pts)), atol=1e-9)


def test_apply_float32_keeps_dtype_and_extra_columns():
    rng = np.random.default_rng(RNG_SEED)
    t = random_transform(rng)
    xyzi = rng.uniform(-80.0, 80.0, (1000, 4)).astype(np.float32)
    out = t.apply(xyzi)
    assert out.dtype == np.float32 and out.shape == xyzi.shape and out.flags.c_contiguous
    assert np.array_equal(out[:, 3], xyzi[:, 3])
    ref = xyzi[:, :3].astype(np.float64) @ t.rotation.T + t.translation
    assert np.max(np.abs(out[:, :3] - ref)) < FLOAT32_TOL_M
    assert np.array_equal(t.apply(np.zeros((0, 4), np.float32)), np.zeros((0, 4), np.float32))
    assert t.apply(xyzi.astype(np.float64)).dtype == np.float64
    with pytest.raises(ValueError, match="shape"):
        t.apply(np.zeros((5, 2)))
    # the input is never modified
    before = xyzi.copy()
    t.apply(xyzi)
    assert np.array_equal(before, xyzi)


def test_transform_arrays_are_read_only():
    t = RigidTransform.from_xyz_rpy((1, 2, 3), (0.1, 0.2, 0.3))
    with pytest.raises(ValueError):
        t.translation[0] = 5.0


# -- configured static transforms -----------------------------------------------------------------
def test_parse_static_transform_accepts_lists_and_rclpy_arrays():
    want = RigidTransform.from_xyz_rpy((1.2, 0.0, 2.0), (0.0, math.radians(2.0), math.radians(1.0)))
    for values in ([1.2, 0, 2.0, 0.0, math.radians(2.0), math.radians(1.0)],
                   array.array("d", [1.2, 0, 2.0, 0.0, math.radians(2.0), math.radians(1.0)]),
                   np.array([1.2, 0, 2.0, 0.0, math.radians(2.0), math.radians(1.0)])):
        assert parse_static_transform("lidar_extrinsic", values).almost_equal(want)


@pytest.mark.parametrize(("values", "match"), [
    ([0.0, 0.0, 1.8], r"'lidar_extrinsic' must have 6 numbers .* got 3"),
    ("0 0 1.8 0 0 0", r"'lidar_extrinsic' must be a list of 6 numbers"),
    (1.8, r"'lidar_extrinsic' must be a list of 6 numbers"),
    ([0.0, 0.0, 1.8, 0.0, "x", 0.0], r"'lidar_extrinsic': pitch must be a number"),
    ([0.0, 0.0, 1.8, 0.0, 0.0, True], r"'lidar_extrinsic': yaw must be a number"),
    ([0.0, math.nan, 1.8, 0.0, 0.0, 0.0], r"'lidar_extrinsic': y must be finite"),
    ([0.0, 0.0, 1.8, 0.0, 2.0, 0.0], r"'lidar_extrinsic': pitch = 2.0 rad is out of range"),
    ([0.0, 0.0, 1.8, -3.5, 0.0, 0.0], r"'lidar_extrinsic': roll = -3.5 rad is out of range"),
    ([0.0, 0.0, 1.8, 0.0, 0.0, 7.0], r"'lidar_extrinsic': yaw = 7.0 rad is out of range"),
])
def test_parse_static_transform_errors_name_the_parameter(values, match):
    with pytest.raises(ParameterError, match=match):
        parse_static_transform("lidar_extrinsic", values)


# -- TransformBuffer ------------------------------------------------------------------------------
def carla_like_tree() -> tuple[TransformBuffer, dict[str, RigidTransform]]:
    """map -> ego_vehicle (dynamic); ego_vehicle -> base_link, lidar, camera (static)."""
    t = {
        "ego": RigidTransform.from_xyz_rpy((100.0, -20.0, 0.0), (0.0, 0.0, 0.7)),
        "base": RigidTransform.identity(),
        "lidar": RigidTransform.from_xyz_rpy((1.2, 0.0, 2.0), (0.0, 0.035, 0.017)),
        "camera": RigidTransform.from_xyz_rpy((1.5, 0.0, 1.5), (-math.pi / 2, 0.0, -math.pi / 2)),
    }
    buf = TransformBuffer()
    buf.set_transform("map", "ego_vehicle", t["ego"], static=False, stamp_ns=300)
    buf.set_transform("ego_vehicle", "base_link", t["base"], static=True)
    buf.set_transform("/ego_vehicle", "ego_vehicle/lidar", t["lidar"], static=True, stamp_ns=5)
    buf.set_transform("ego_vehicle", "ego_vehicle/rgb_front", t["camera"], static=True)
    return buf, t


def test_lookup_resolves_chains_both_ways():
    buf, t = carla_like_tree()
    assert buf.frames == {"map", "ego_vehicle", "base_link", "ego_vehicle/lidar",
                          "ego_vehicle/rgb_front"}
    # sibling: base_link <- ego_vehicle -> lidar
    got = buf.lookup("base_link", "ego_vehicle/lidar")
    assert got.almost_equal(t["base"].inverse() @ t["lidar"])
    assert buf.lookup("ego_vehicle/lidar", "base_link").almost_equal(got.inverse())
    # up the tree: lidar -> map
    assert buf.lookup("map", "ego_vehicle/lidar").almost_equal(t["ego"] @ t["lidar"])
    # down the tree and across: camera -> lidar
    cam_to_lidar = buf.lookup("ego_vehicle/lidar", "ego_vehicle/rgb_front")
    assert cam_to_lidar.almost_equal(t["lidar"].inverse() @ t["camera"])
    assert buf.lookup("map", "map").is_pure_translation()
    chain = buf.lookup_chain("base_link", "ego_vehicle/lidar")
    assert chain.static and chain.stamp_ns == 0
    chain = buf.lookup_chain("map", "ego_vehicle/lidar")
    assert not chain.static and chain.stamp_ns == 5
    assert buf.parent_of("ego_vehicle/lidar") == "ego_vehicle" and buf.parent_of("map") is None


def test_lookup_matches_brute_force_on_random_trees():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(20):
        buf = TransformBuffer()
        to_root = {"f0": RigidTransform.identity()}  # T_root<-frame
        for k in range(1, 12):
            parent = f"f{rng.integers(0, k)}"
            tr = random_transform(rng)
            buf.set_transform(parent, f"f{k}", tr, static=True)
            to_root[f"f{k}"] = to_root[parent] @ tr
        a, b = (f"f{i}" for i in rng.integers(0, 12, 2))
        want = to_root[a].inverse() @ to_root[b]
        assert buf.lookup(a, b).almost_equal(want, tol_m=1e-9, tol_rad=1e-9)


def test_lookup_errors_name_the_frames():
    buf, _ = carla_like_tree()
    with pytest.raises(FrameLookupError, match=r"source frame 'velodyne' is unknown; known frames"):
        buf.lookup("base_link", "velodyne")
    buf.set_transform("odom", "imu", RigidTransform.identity(), static=True)
    with pytest.raises(FrameLookupError, match=r"'base_link' and 'imu' are not connected"):
        buf.lookup("base_link", "imu")
    assert not buf.can_transform("base_link", "imu") and buf.can_transform("map", "base_link")


def test_edges_replace_and_loops_are_refused():
    buf, t = carla_like_tree()
    moved = RigidTransform.from_xyz_rpy((0.0, 0.0, 1.9))
    buf.set_transform("ego_vehicle", "ego_vehicle/lidar", moved, static=True)
    assert buf.lookup("ego_vehicle", "ego_vehicle/lidar").almost_equal(moved)
    with pytest.raises(ValueError, match="loop"):
        buf.set_transform("ego_vehicle/lidar", "map", RigidTransform.identity(), static=True)
    with pytest.raises(ValueError, match="own parent"):
        buf.set_transform("map", "map", RigidTransform.identity(), static=True)
    with pytest.raises(ValueError, match="empty"):
        buf.set_transform("", "x", RigidTransform.identity(), static=True)
    # re-parenting a child keeps a tree
    buf.set_transform("base_link", "ego_vehicle/lidar", moved, static=True)
    assert buf.parent_of("ego_vehicle/lidar") == "base_link"
    assert buf.lookup("ego_vehicle", "ego_vehicle/lidar").almost_equal(t["base"] @ moved)
    buf.clear()
    assert buf.frames == set()


# -- ExtrinsicResolver ----------------------------------------------------------------------------
def test_extrinsic_resolver_prefers_the_tree_and_says_which():
    configured = RigidTransform.from_xyz_rpy((0.0, 0.0, 1.8))
    buf = TransformBuffer()
    resolver = ExtrinsicResolver(buf, "base_link", "ego_vehicle/lidar", configured)
    ext = resolver.resolve()
    assert ext.origin == ORIGIN_CONFIGURED and ext.transform is configured
    assert "unknown" in ext.detail and ext.sensor_frame == "ego_vehicle/lidar"

    buf, t = carla_like_tree()
    resolver.buffer = buf
    ext = resolver.resolve()
    assert ext.origin == ORIGIN_TF_STATIC and ext.detail == ""
    assert ext.transform.almost_equal(t["lidar"])
    # carla-ros-bridge sends its sensor transforms on /tf: still used, labelled 'tf'
    buf.set_transform("ego_vehicle", "ego_vehicle/lidar", t["lidar"], static=False)
    assert resolver.resolve().origin == ORIGIN_TF
    # a message in a frame the tree does not know: the configured one, with the reason
    ext = resolver.resolve("velodyne_top")
    assert ext.origin == ORIGIN_CONFIGURED and "velodyne_top" in ext.detail
