"""Detector ground truth: parked cars (static clutter in the simulator) are cars, as in nuScenes."""

from __future__ import annotations

import json

import numpy as np
from tps_eval.detector.data import (
    CLASS_CAR,
    MAT_PARKED_CAR,
    PARKED_ID_BASE,
    episode_frames_from_arrays,
    parked_car_boxes,
    points_in_boxes,
)

MAT_POLE = 10


def _episode(points_lidar: np.ndarray, static_boxes: np.ndarray, ego_pose: tuple[float, float, float]) -> dict:
    """A one-frame episode in shard layout with one moving car 10 m ahead."""
    return {
        "meta_json": json.dumps({"clutter": "medium", "seed": 1002, "scenario": "unit", "lidar_height_m": 1.8}),
        "t_s": np.array([0.0]),
        "points": points_lidar.astype(np.float32),
        "point_offsets": np.array([0, len(points_lidar)]),
        "gt_boxes": np.array([[10.0, 0.0, 0.75, 4.5, 1.9, 1.5, 0.0, 5.0, 0.0]], np.float32),
        "gt_offsets": np.array([0, 1]),
        "gt_class": np.array([1], np.uint8),
        "gt_id": np.array([7], np.int32),
        "gt_num_points": np.array([40], np.int32),
        "ego_pose": np.array([ego_pose], np.float64),
        "static_boxes": static_boxes.astype(np.float32),
    }


def test_parked_cars_join_the_ground_truth_as_cars_in_base_link():
    ego = (100.0, 50.0, np.pi / 2)  # heading +y in map
    # a parked car 20 m ahead of the ego and 5 m to its right, parallel to it; a pole beside it
    statics = np.array([[105.0, 70.0, 0.75, 4.5, 1.9, 1.5, np.pi / 2, MAT_PARKED_CAR],
                        [95.0, 70.0, 2.0, 0.3, 0.3, 4.0, 0.0, MAT_POLE]])
    # 25 points on the parked car's side (base_link x=20, y=-5 -> lidar z = 0.8 - 1.8), 3 far away
    on_car = np.column_stack([np.linspace(18.5, 21.5, 25), np.full(25, -4.2), np.full(25, -1.0), np.ones(25)])
    far = np.array([[40.0, 30.0, -1.0, 1.0]] * 3)
    ep = _episode(np.concatenate([on_car, far]), statics, ego)

    (f,) = episode_frames_from_arrays(ep)
    assert len(f.gt_boxes) == 2, "the moving car plus the parked car; the pole is not an agent"
    k = list(f.gt_id).index(PARKED_ID_BASE)
    np.testing.assert_allclose(f.gt_boxes[k, :2], [20.0, -5.0], atol=1e-4)
    assert abs(f.gt_boxes[k, 6]) < 1e-6, "parallel to the ego -> yaw 0 in base_link"
    np.testing.assert_array_equal(f.gt_boxes[k, 7:9], [0.0, 0.0])
    assert f.gt_class[k] == CLASS_CAR and f.gt_num_points[k] == 25

    (t,) = episode_frames_from_arrays(ep, parked_cars=False)
    assert list(t.gt_id) == [7], "traffic-only ground truth keeps the shard's boxes alone"


def test_parked_car_point_counts_match_the_lidar_hits():
    """The point-in-box count stands in for the lidar hit count the shards keep only for traffic."""
    from tps_sim.sensors.lidar import LidarModel, to_xyzi
    from tps_sim.sensors.synthetic import synthetic_scene

    scene = synthetic_scene(3, n_vehicles=20, clutter="high")
    scan = LidarModel().scan(scene, np.random.default_rng(3))
    st = scene.statics
    static_boxes = np.concatenate([st.centers, st.sizes, st.yaws[:, None], st.materials[:, None]], axis=1)
    parked = np.nonzero(st.materials == MAT_PARKED_CAR)[0]
    assert len(parked) >= 3, "scene has too few parked cars for the check"
    boxes, ids, counts = parked_car_boxes(static_boxes, np.asarray(scene.ego_pose), to_xyzi(scan), 1.8,
                                          max_range_m=1e9)
    assert len(boxes) == len(parked)
    hits = np.array([(scan.hit_id == st.ids[parked[i - PARKED_ID_BASE]]).sum() for i in ids])
    assert hits.sum() > 50, "the lidar hit no parked car; pick another seed"
    np.testing.assert_allclose(counts, hits, atol=2, rtol=0.1)


def test_points_in_boxes_respects_yaw_and_height():
    box = np.array([[0.0, 0.0, 1.0, 4.0, 2.0, 2.0, np.pi / 2]])  # long axis along y
    pts = np.array([[0.0, 1.8, 1.0], [1.8, 0.0, 1.0], [0.0, 0.0, 2.5], [0.0, 0.0, 0.1]])
    assert points_in_boxes(pts, box).tolist() == [2]


def test_traffic_only_ignore_region_is_the_grown_footprint():
    from tps_eval.detector.evaluate import on_boxes

    parked = np.array([[20.0, -5.0, 0.75, 4.5, 1.9, 1.5, np.pi / 2]])  # long axis along y
    xy = np.array([[20.0, -5.0], [20.0, -8.0], [21.9, -5.0], [23.0, -5.0], [20.0, -8.4]])
    # margin 1 m: half-length 2.25 + 1 along y, half-width 0.95 + 1 along x
    assert on_boxes(xy, parked, 1.0).tolist() == [True, True, True, False, False]
    assert not on_boxes(xy, parked[:0], 1.0).any()
