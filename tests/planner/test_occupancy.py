"""Occupancy from the raw cloud (tps_planner.occupancy): grid clustering and tracking in the map
frame, on clouds of the project's ray-casting lidar model (cars ahead, beside and behind)."""

import numpy as np
import pytest
from planner_helpers import DT_S, lidar_scan
from tps_common.stamp_sync import EgoPose
from tps_planner.fallback import FallbackPlanner
from tps_planner.occupancy import ObjectTracker, OccupancyParams, cluster_points

CAR = (4.5, 1.9, 1.5)
SPEED_TOLERANCE_MPS = 0.5


def points_map(boxes, ego=(0.0, 0.0, 0.0), seed=0):
    """Non-ground map points of a scan (ego at the origin heading +x: map = base_link)."""
    fb = FallbackPlanner()
    pts = lidar_scan(ego, boxes, seed=seed)
    return fb.obstacle_points_map(pts[np.all(np.isfinite(pts[:, :3]), axis=1)],
                                  EgoPose(0.0, ego[0], ego[1], ego[2], 0.0))


def test_clusters_separate_neighbouring_cars_and_keep_each_whole():
    # ahead in two neighbouring lanes (1.6 m apart side by side), behind, and one a lane over
    boxes = [(20.0, 0.0, 0.0, *CAR), (20.0, 3.5, 0.0, *CAR), (-15.0, 0.0, 0.0, *CAR), (-15.0, -3.5, 0.0, *CAR)]
    pts = points_map(boxes)
    c = cluster_points(pts[:, :2], np.zeros(2), OccupancyParams())
    assert len(c.centers) == 4
    for bx, by, *_ in boxes:
        near = np.hypot(c.centers[:, 0] - bx, c.centers[:, 1] - by)
        assert near.min() < CAR[0] / 2 + 0.5            # each car is one cluster (its visible faces)
    assert np.all(c.labels >= 0)


def test_tracks_estimate_velocity_in_the_map_frame_all_around():
    p = OccupancyParams()
    tracker = ObjectTracker(p)
    # a car coming up in the left lane at 8 m/s, one closing from behind at 4 m/s, one ahead
    # driving away at 3 m/s; the ego standing
    movers = [(-28.0, 3.5, 8.0), (-30.0, 0.0, 4.0), (15.0, 0.0, 3.0)]
    for k in range(12):
        t = k * DT_S
        boxes = [(x + vx * t, y, 0.0, *CAR) for x, y, vx in movers]
        objs = tracker.update(cluster_points(points_map(boxes, seed=k)[:, :2], np.zeros(2), p), t)
    t_end = 11 * DT_S
    for x, y, vx in movers:
        # a car right beside the lidar may show as two clusters (its side and its roof edge):
        # every known track on it moves with it
        on_car = [o for o in objs if abs(o.xy[0] - (x + vx * t_end)) < CAR[0] and abs(o.xy[1] - y) < CAR[1]]
        known = [o for o in on_car if o.velocity_known]
        assert known and all(o.age >= p.min_age for o in known)
        for ob in known:
            assert ob.velocity[0] == pytest.approx(vx, abs=SPEED_TOLERANCE_MPS)
            assert abs(ob.velocity[1]) < SPEED_TOLERANCE_MPS
    assert len(objs) <= 2 * len(movers)


def test_new_tracks_have_no_velocity_until_measured_and_unseen_ones_coast():
    p = OccupancyParams()
    tracker = ObjectTracker(p)
    clusters = cluster_points(points_map([(15.0, 0.0, 0.0, *CAR)])[:, :2], np.zeros(2), p)
    (first,) = tracker.update(clusters, 0.0)
    assert not first.velocity_known and np.all(first.velocity == 0.0)
    for k in range(1, p.min_age):
        (ob,) = tracker.update(clusters, k * DT_S)
    assert ob.velocity_known and ob.stationary_s == pytest.approx(DT_S)   # standing counts from then
    (ob,) = tracker.update(clusters, p.min_age * DT_S)
    assert ob.stationary_s == pytest.approx(2 * DT_S)
    empty = cluster_points(np.zeros((0, 2)), np.zeros(2), p)
    (coasting,) = tracker.update(empty, (p.min_age + 1) * DT_S)
    assert not coasting.measured and coasting.track_id == ob.track_id
    assert tracker.update(empty, (p.min_age + 2) * DT_S + p.coast_s) == []
