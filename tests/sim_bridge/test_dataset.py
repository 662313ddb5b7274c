"""Training shards: one short expert episode -> the documented keys, consistent offsets, frames
and futures; the CLI's parallel (spawn pool) path; split folders by seed."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from sim_bridge_helpers import SCENARIO, SEED, VENV_BIN
from tps_sim import splits
from tps_sim.dataset import clutter_for_seed, generate_episode, load_episode

DURATION_S = 2.0
FRAME_STRIDE = 5
IMAGE_EVERY = 2
FRAMES = int(round(DURATION_S / 0.1)) // FRAME_STRIDE + 1
KEYS = {"meta_json", "t_s", "points", "point_offsets", "image", "image_frame_idx", "gt_offsets",
        "gt_boxes", "gt_class", "gt_id", "gt_num_points", "gt_future", "gt_future_valid",
        "ego_pose", "ego_speed", "ego_accel", "ego_future", "ego_future_valid", "route",
        "static_boxes", "light_id", "light_head", "light_stop", "light_on_route", "light_state",
        "light_stop_base"}
POSE_TOL_M = 1e-3


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    path = generate_episode(SCENARIO, SEED, out, duration_s=DURATION_S, frame_stride=FRAME_STRIDE,
                            image_every=IMAGE_EVERY, lidar_beams=16, lidar_azimuth_steps=512)
    return out, path


def test_shard_keys_and_offsets(shard):
    out, path = shard
    assert path == out / "train" / SCENARIO / f"seed{SEED}.npz"
    with np.load(path) as npz:
        assert set(npz.files) == KEYS
    ep = load_episode(path)
    t = len(ep)
    assert t == FRAMES
    np.testing.assert_allclose(ep.t_s, np.arange(t) * FRAME_STRIDE * 0.1, atol=1e-9)
    for key in ("point_offsets", "gt_offsets"):
        off = ep.arrays[key]
        assert off.shape == (t + 1,) and off[0] == 0 and np.all(np.diff(off) >= 0)
    assert ep.point_offsets[-1] == len(ep.arrays["points"])
    g = ep.gt_offsets[-1]
    assert ep.gt_boxes.shape == (g, 9) and ep.gt_boxes.dtype == np.float32
    assert ep.gt_class.shape == ep.gt_id.shape == ep.gt_num_points.shape == (g,)
    assert ep.gt_future.shape == (g, 6, 2) and ep.gt_future_valid.shape == (g, 6)
    assert set(np.unique(ep.gt_class)) <= {1, 2, 3, 4, 5}
    assert ep.ego_pose.shape == (t, 3) and ep.ego_future.shape == (t, 6, 3)
    assert ep.image_frame_idx.tolist() == list(range(0, t, IMAGE_EVERY))
    assert ep.arrays["image"].shape[1:] == (360, 640, 3) and ep.arrays["image"].dtype == np.uint8
    assert ep.static_boxes.shape[1] == 8 and ep.route.shape[1] == 2
    meta = ep.meta
    assert meta["split"] == "train" and meta["clutter"] == clutter_for_seed(SEED)
    assert meta["frame_stride"] == FRAME_STRIDE and meta["lidar"]["beams"] == 16
    assert meta["instruction"]["text"]


def test_frames_are_consistent(shard):
    _, path = shard
    ep = load_episode(path)
    for i in range(len(ep)):
        pts = ep.points(i)
        gt = ep.gt(i)
        assert pts.dtype == np.float32 and pts.shape[1] == 4 and np.isfinite(pts).all()
        # every lidar point count is bounded by the frame's points; hit boxes have points
        assert gt.num_points.sum() <= len(pts)
        assert (ep.image(i) is not None) == (i % IMAGE_EVERY == 0)
    # at least some agents are seen by the lidar, and those are near the ego (base_link)
    seen = ep.gt_num_points > 0
    assert seen.any()
    assert np.hypot(ep.gt_boxes[seen, 0], ep.gt_boxes[seen, 1]).max() < 90.0
    # ego future = later ego poses seen from the frame's base_link: frame 0's +0.5 s point
    # (5 steps) is frame 1 when frame_stride == 5
    pose0, pose1 = ep.ego_pose[0], ep.ego_pose[1]
    c, s = np.cos(pose0[2]), np.sin(pose0[2])
    d = pose1[:2] - pose0[:2]
    expected = (c * d[0] + s * d[1], -s * d[0] + c * d[1])
    assert ep.ego_future_valid[0, 0]
    np.testing.assert_allclose(ep.ego_future[0, 0, :2], expected, atol=POSE_TOL_M)
    # the last frame has no future inside the episode
    assert not ep.ego_future_valid[-1].any()
    # agent futures: an agent present in frame 0 and frame 1 -> future[0] = its frame-1 position
    g0, g1 = ep.gt(0), ep.gt(1)
    common = np.intersect1d(g0.ids, g1.ids)
    assert len(common)
    a = int(common[0])
    i0, i1 = int(np.where(g0.ids == a)[0][0]), int(np.where(g1.ids == a)[0][0])
    assert g0.future_valid[i0, 0]
    # frame-1 box in map, then into frame-0 base_link
    c1, s1 = np.cos(pose1[2]), np.sin(pose1[2])
    bx, by = g1.boxes[i1, :2]
    map_xy = pose1[:2] + np.array([c1 * bx - s1 * by, s1 * bx + c1 * by])
    d = map_xy - pose0[:2]
    np.testing.assert_allclose(g0.future[i0, 0], (c * d[0] + s * d[1], -s * d[0] + c * d[1]),
                               atol=POSE_TOL_M)


def test_generation_is_deterministic(shard, tmp_path):  # across calls, via the files
    _, path = shard
    again = generate_episode(SCENARIO, SEED, tmp_path, duration_s=DURATION_S,
                             frame_stride=FRAME_STRIDE, image_every=IMAGE_EVERY, lidar_beams=16,
                             lidar_azimuth_steps=512)
    a, b = load_episode(path), load_episode(again)
    for key in ("points", "gt_boxes", "gt_id", "ego_pose", "image"):
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)


@pytest.mark.slow
def test_cli_parallel_split_folders(tmp_path):
    proc = subprocess.run(
        [str(VENV_BIN / "tps-sim"), "dataset", "--scenarios", f"{SCENARIO},highway", "--episodes",
         "1", "--split", "val", "-o", str(tmp_path), "--workers", "2", "--duration", "0.5",
         "--image-every", "0", "--lidar-beams", "4", "--lidar-azimuth-steps", "64",
         "--no-progress"], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == {"split": "val", "shards": 2, "failed": 0, "out": str(tmp_path)}
    first_val = splits.seeds("val", 1)[0]
    for scen in (SCENARIO, "highway"):
        ep = load_episode(tmp_path / "val" / scen / f"seed{first_val}.npz")
        assert ep.meta["split"] == "val" and ep.meta["seed"] == first_val
        assert len(ep.arrays["image"]) == 0


def test_test_seeds_land_in_test_folder(tmp_path):
    seed = splits.TEST[0]
    path = generate_episode(SCENARIO, seed, tmp_path, duration_s=0.2, frame_stride=1,
                            image_every=0, lidar_beams=4, lidar_azimuth_steps=64)
    assert path.parent.parent.name == "test"
    assert load_episode(path).meta["split"] == "test"


def test_episode_arrays_equal_the_shard(shard):
    from tps_sim.dataset import Episode, episode_arrays

    _, path = shard
    arrays = episode_arrays(SCENARIO, SEED, duration_s=DURATION_S, frame_stride=FRAME_STRIDE,
                            image_every=IMAGE_EVERY, lidar_beams=16, lidar_azimuth_steps=512)
    assert set(arrays) == KEYS
    stored = load_episode(path)
    ep = Episode(arrays)
    assert len(ep) == len(stored)
    np.testing.assert_array_equal(ep.points(1), stored.points(1))
    np.testing.assert_array_equal(ep.gt(1).boxes, stored.gt(1).boxes)


def test_traffic_lights_and_downscaled_images(tmp_path):
    """A signalised episode: every frame carries the heads' states and their stop lines in that
    frame's base_link; images downscaled to the asked size with the matching K."""
    from tps_common.traffic_lights import RED, YELLOW
    from tps_sim.dataset import episode_arrays, scaled_camera_matrix
    from tps_sim.sensors.camera import CameraModel

    arrays = episode_arrays("signalised", SEED, duration_s=3.0, frame_stride=10, image_every=1,
                            lidar_beams=8, lidar_azimuth_steps=256, image_size=(160, 90))
    from tps_sim.dataset import Episode

    ep = Episode(arrays)
    assert ep.meta["image_size"] == [160, 90] and arrays["image"].shape == (len(ep), 90, 160, 3)
    k = np.array(ep.meta["image_K"]).reshape(3, 3)
    assert np.allclose(k, scaled_camera_matrix(CameraModel().intrinsics(), (640, 360), (160, 90)))
    assert k[0, 0] == pytest.approx(80.0) and k[0, 2] == pytest.approx(79.625)
    ids, states, lines = ep.lights(0)
    assert ids.tolist() == list(range(1, 9)) and lines.shape == (8, 2, 2)
    assert set(states.tolist()) <= {RED, YELLOW, 2} and arrays["light_on_route"].sum() == 1
    # the stop line in base_link = the map line moved into the frame's ego pose
    pose = ep.ego(0)[0]
    stop = arrays["light_stop"][0]
    c, s_ = np.cos(pose[2]), np.sin(pose[2])
    rel = stop[:2] - pose[:2]
    centre = np.array([c * rel[0] + s_ * rel[1], -s_ * rel[0] + c * rel[1]])
    assert np.allclose(lines[0].mean(axis=0), centre, atol=1e-3)
    assert np.linalg.norm(lines[0][1] - lines[0][0]) == pytest.approx(stop[3], abs=1e-3)
    plain = episode_arrays(SCENARIO, SEED, duration_s=0.2, frame_stride=1, image_every=0,
                           lidar_beams=8, lidar_azimuth_steps=256)
    assert plain["light_id"].shape == (0,) and plain["light_state"].shape == (3, 0)
