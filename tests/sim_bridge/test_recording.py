"""`tps-sim record`: a real MCAP bag read back by rosbags and by mcap-ros2-support, custom types
(GroundTruth, CarlaEgoVehicleStatus) included; sqlite3 storage; type hashes equal rosidl's."""

from __future__ import annotations

import subprocess
from collections import Counter

import numpy as np
import pytest
from sim_bridge_helpers import SCENARIO, SEED, VENV_BIN
from tps_sim import conversions as conv
from tps_sim.bridge import BridgeParams
from tps_sim.recording import build_typestore, check_type_hashes, record

DURATION_S = 1.5
STEPS = int(round(DURATION_S / 0.1)) + 1
CAMERA_EVERY = 5
SMALL_LIDAR = {"lidar_beams": 8, "lidar_azimuth_steps": 256}


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "zstd"])
def mcap_bag(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("bag") / "run.mcap"
    proc = subprocess.run(
        [str(VENV_BIN / "tps-sim"), "record", "--scenario", SCENARIO, "--seed", str(SEED),
         "--duration", str(DURATION_S), "-o", str(out), "--camera-every", str(CAMERA_EVERY),
         "--lidar-beams", "8", "--lidar-azimuth-steps", "256", "--no-progress"]
        + (["--compress"] if request.param else []),
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    return out


def expected_counts() -> dict:
    n_img = len(range(0, STEPS, CAMERA_EVERY))
    return {conv.TOPIC_CLOCK: STEPS, conv.TOPIC_LIDAR: STEPS, conv.TOPIC_ODOMETRY: STEPS,
            conv.TOPIC_STATUS: STEPS, conv.TOPIC_GROUND_TRUTH: STEPS, conv.TOPIC_IMAGE: n_img,
            conv.TOPIC_CAMERA_INFO: n_img, conv.TOPIC_ROUTE: 1, conv.TOPIC_INSTRUCTION: 1}


def test_rosbags_reads_back_custom_types(mcap_bag):
    from carla_msgs.msg import CarlaEgoVehicleStatus
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from tps_msgs.msg import GroundTruth

    counts: Counter = Counter()
    gts, statuses = [], []
    with AnyReader([mcap_bag], default_typestore=build_typestore()) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types[conv.TOPIC_GROUND_TRUTH] == "tps_msgs/msg/GroundTruth"
        assert types[conv.TOPIC_STATUS] == "carla_msgs/msg/CarlaEgoVehicleStatus"
        for conn, t_ns, raw in reader.messages():
            counts[conn.topic] += 1
            if conn.topic == conv.TOPIC_GROUND_TRUTH:
                gts.append((t_ns, reader.deserialize(raw, conn.msgtype)))
                # the same bytes are valid rclpy CDR
                assert deserialize_message(bytes(raw), GroundTruth).step == gts[-1][1].step
            elif conn.topic == conv.TOPIC_STATUS:
                statuses.append(deserialize_message(bytes(raw), CarlaEgoVehicleStatus))
            elif conn.topic == conv.TOPIC_LIDAR:
                pc = reader.deserialize(raw, conn.msgtype)
                assert pc.point_step == 16 and pc.header.frame_id == conv.LIDAR_FRAME
                assert [f.name for f in pc.fields] == ["x", "y", "z", "intensity"]
    assert dict(counts) == expected_counts()
    steps = [g.step for _, g in gts]
    assert steps == list(range(STEPS))
    for t_ns, g in gts:
        assert t_ns == conv.stamp_to_ns(conv.stamp(g.step * 0.1))
        assert g.scenario == SCENARIO and g.seed == SEED and len(g.agents) > 0
    # GT futures: 6 points at 0.5 s where the episode lasts that long; the ego's future is its
    # later position
    assert len(gts[0][1].ego.future) == min(6, (STEPS - 1) // 5)
    first_future = gts[0][1].ego.future[0]
    later_ego = gts[5][1].ego.center
    assert (first_future.x, first_future.y) == pytest.approx((later_ego.x, later_ego.y))
    assert all(s.velocity > 0 for s in statuses)


def test_mcap_ros2_support_decodes(mcap_bag):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts: Counter = Counter()
    with open(mcap_bag, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        # what Foxglove needs to open and seek the file: ros2 profile, cdr, a summary with
        # chunk indexes
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert summary is not None and summary.chunk_indexes
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        for schema, channel, _message, msg in reader.iter_decoded_messages():
            counts[channel.topic] += 1
            assert schema.encoding == "ros2msg"
            if channel.topic == conv.TOPIC_GROUND_TRUTH:
                assert schema.name == "tps_msgs/msg/GroundTruth"
                assert msg.scenario == SCENARIO
                assert msg.ego.size.x > 0
            elif channel.topic == conv.TOPIC_STATUS:
                assert np.isfinite(msg.velocity)
                assert msg.control.throttle == 0.0  # the expert drove: neutral control
            elif channel.topic == conv.TOPIC_INSTRUCTION:
                assert msg.text
    assert dict(counts) == expected_counts()


def test_type_hashes_equal_rosidl():
    store = build_typestore()
    msgtypes = list(conv.TOPIC_TYPES.values()) + ["carla_msgs/msg/CarlaEgoVehicleControl"]
    assert check_type_hashes(store, msgtypes) == {}
    from tps_sim.recording import rosidl_type_hash

    assert rosidl_type_hash("tps_msgs/msg/GroundTruth") is not None


def test_sqlite3_storage(tmp_path):
    from rosbags.highlevel import AnyReader

    out = tmp_path / "bag_sqlite"
    params = BridgeParams(scenario=SCENARIO, seed=SEED, duration_s=0.5, ego_driver="expert",
                          **SMALL_LIDAR)
    path = record(params, out, storage="sqlite3", progress=False)
    assert (path / "metadata.yaml").is_file() and list(path.glob("*.db3"))
    with AnyReader([path], default_typestore=build_typestore()) as reader:
        n = Counter(c.topic for c, _, _ in reader.messages())
        digests = {c.topic: c.digest for c in reader.connections}
    assert n[conv.TOPIC_GROUND_TRUTH] == 6
    assert digests[conv.TOPIC_GROUND_TRUTH].startswith("RIHS01_")


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "exists.mcap"
    out.write_bytes(b"")
    proc = subprocess.run([str(VENV_BIN / "tps-sim"), "record", "-o", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "exists" in proc.stderr and "Traceback" not in proc.stderr


def test_recording_is_byte_identical_across_processes(tmp_path):
    """Same seed -> the same bytes on every topic (world, lidar noise, camera, conversions), in
    two separate processes."""
    from rosbags.rosbag2 import Reader

    bags = []
    for name in ("a.mcap", "b.mcap"):
        out = tmp_path / name
        proc = subprocess.run(
            [str(VENV_BIN / "tps-sim"), "record", "--scenario", SCENARIO, "--seed", str(SEED),
             "--duration", "0.5", "-o", str(out), "--camera-every", "2", "--lidar-beams", "8",
             "--lidar-azimuth-steps", "256", "--no-progress"],
            capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr
        with Reader(out) as reader:
            bags.append([(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()])
    assert len(bags[0]) == len(bags[1]) > 0
    assert bags[0] == bags[1]
