"""``tps-eval closedloop --record``: an episode's full topic set goes to MCAP, and replaying that
bag through the same nodes reproduces the closed-loop run's selected trajectories exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from replay_bags import REPO
from tps_eval.cli import run_suite
from tps_eval.executors import default_domain_base

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WORKERS = 2
SUITE = {
    "name": "record",
    "seeds": "0:1",                          # TRAIN seed
    "configurations": ["fallback"],          # brings the expert along (two short episodes)
    "defaults": {"duration_s": 3.0, "density": 0.6, "clutter": "low", "route_goal_m": 50.0},
    "cases": [{"scenario": "cut_in"}],
}
RECORDED_TOPICS = {"/carla/ego_vehicle/lidar", "/carla/ego_vehicle/odometry", "/tps/sim/ground_truth", "/tf",
                   "/tf_static", "/planning/route", "/tps/map/lane_map", "/clock",
                   "/tps/planning/fallback_trajectory", "/tps/planning/trajectory",
                   "/carla/ego_vehicle/vehicle_control_cmd", "/diagnostics"}
# The nodes of config/graph/sim_fallback.yaml besides the bridge and the controller.
REPLAY_NODES = "traffic_light_reader,fallback,trajectory_arbiter"


def test_recorded_episode_replays_to_the_same_trajectories(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    suite = tmp_path / "record.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    final = run_suite(str(suite), None, tmp_path / "eval", "local", WORKERS, default_domain_base(), None,
                      bev=False, progress=False, record=True)
    episodes = {r["spec"]["configuration"]: r for r in final["episodes"]}
    fallback = episodes["fallback"]
    assert fallback["status"] == "ok", fallback["error"]
    bag = tmp_path / "eval" / "episodes" / "cut_in-s0-fallback" / "episode.mcap"
    assert bag.is_file() and (bag.parent / "episode_log.npz").is_file()
    steps = fallback["metrics"]["steps"]

    counts: dict[str, int] = {}
    lidar_stamps = set()
    with open(bag, "rb") as f:
        for _, channel, _, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            assert decoded is not None
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == "/carla/ego_vehicle/lidar":
                lidar_stamps.add((decoded.header.stamp.sec, decoded.header.stamp.nanosec))
    assert RECORDED_TOPICS <= set(counts), sorted(RECORDED_TOPICS - set(counts))
    assert counts["/carla/ego_vehicle/lidar"] >= steps          # every step's sensors, none lost

    out = tmp_path / "replay"
    proc = subprocess.run([sys.executable, "-m", "tps_eval.replay.cli", str(bag), "--nodes", REPLAY_NODES,
                           "--out", str(out), "--quiet", "--no-plots"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    # The bridge publishes its first frame again while it waits for the controller: the repeat
    # (same stamp) is counted as out of order and not played.
    assert report["frames"] == len(lidar_stamps)
    repeats = counts["/carla/ego_vehicle/lidar"] - len(lidar_stamps)
    assert report["input"]["non_monotonic"].get("/carla/ego_vehicle/lidar", 0) == repeats
    logged = report["vs_logged_run"]
    assert logged is not None and logged["matched"] == report["frames"]
    assert logged["source_changes"] == 0
    assert (logged["1s_m"], logged["2s_m"], logged["3s_m"]) == (0.0, 0.0, 0.0), logged

    # The fallback core replayed offline through the same bag (no DDS) decides what the node did
    # in the run on every frame: lane state and reason, nearest obstacle (to 0.05 m).
    from tps_eval.replay.fallback_trace import trace_bag

    trace = trace_bag(bag, params_file=REPO / "config" / "fallback_node.param.yaml")
    assert trace.compared >= len(lidar_stamps) - 1, (trace.compared, len(lidar_stamps))
    assert trace.agree == trace.compared, trace.first_disagreement_s
