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
            conv.TOPIC_CAMERA_INFO: n_img, conv.TOPIC_ROUTE: 1, conv.TOPIC_INSTRUCTION: 1,
            conv.TOPIC_LANE_MAP: 1,
            conv.TOPIC_TF: STEPS, conv.TOPIC_TF_STATIC: 1, conv.TOPIC_LIGHT_STATUS: STEPS,
            conv.TOPIC_LIGHT_INFO: 1}


def test_rosbags_reads_back_custom_types(mcap_bag):
    from carla_msgs.msg import CarlaEgoVehicleStatus
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from tps_msgs.msg import GroundTruth

    counts: Counter = Counter()
    gts, statuses = [], []
    tf_static = None
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
            elif conn.topic == conv.TOPIC_TF_STATIC:
                assert t_ns == 0 and conn.msgtype == "tf2_msgs/msg/TFMessage"
                tf_static = reader.deserialize(raw, conn.msgtype).transforms
            elif conn.topic == conv.TOPIC_LIDAR:
                pc = reader.deserialize(raw, conn.msgtype)
                assert pc.point_step == 16 and pc.header.frame_id == conv.LIDAR_FRAME
                assert [f.name for f in pc.fields] == ["x", "y", "z", "intensity"]
    assert dict(counts) == expected_counts()
    assert tf_static is not None and [(t.header.frame_id, t.child_frame_id) for t in tf_static] == [
        ("ego_vehicle", "base_link"), ("ego_vehicle", "ego_vehicle/lidar"),
        ("ego_vehicle", "ego_vehicle/rgb_front")]
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


# RIHS01 type hashes of carla-ros-bridge's own carla_msgs (ros-carla-msgs), as rosidl generated
# them into that package's C type-description sources (msg/detail/*__description.c); the hash
# covers field names and types (not constants or comments) and those of nested types.
UPSTREAM_CARLA_HASHES = {
    "carla_msgs/msg/CarlaBoundingBox":
        "RIHS01_64150a58baddf4ecdfd2adcc41b74bc2a7caaa1677545e971b47623ca1c31b63",
    "carla_msgs/msg/CarlaTrafficLightInfo":
        "RIHS01_c6bc358a736c0843889a6f65d8070f9891619a250fcc58ad51ffb9f87dd138b4",
    "carla_msgs/msg/CarlaTrafficLightInfoList":
        "RIHS01_9a13ecb7abe8b5b53c9dc5b7794981c90bd04b0556f8ab66cf26863ac600fde6",
    "carla_msgs/msg/CarlaTrafficLightStatus":
        "RIHS01_e4a58f6956c9d395f8aa8df33b6aa2765cb83c8522ec3e676196dc49485bf0b8",
    "carla_msgs/msg/CarlaTrafficLightStatusList":
        "RIHS01_07f3b9ec436d9925e8b55f229d420336a997e824911afdb299f2dd0f32a26268",
}


def test_carla_traffic_light_types_have_the_upstream_type_hashes():
    """The workspace carla_msgs traffic-light types are field for field carla-ros-bridge's: the
    hashes rosidl generated for them (and the ones rosbags computes from the .msg files) equal
    upstream's."""
    from tps_sim.recording import rosidl_type_hash

    store = build_typestore()
    for msgtype, upstream in UPSTREAM_CARLA_HASHES.items():
        assert store.hash_rihs01(msgtype) == upstream, msgtype
        assert rosidl_type_hash(msgtype) in (upstream, None), msgtype
    assert rosidl_type_hash("carla_msgs/msg/CarlaTrafficLightStatusList") is not None, \
        "carla_msgs is not built with the traffic-light types (bash scripts/setup.sh)"


def test_tf2_msgs_copy_has_the_upstream_type_hash():
    """The workspace tf2_msgs (or the real one where installed) is field for field upstream's:
    rosidl's RIHS01 hash of TFMessage equals the one rosbags knows for ROS 2 Jazzy."""
    from rosbags.typesys import Stores, get_typestore
    from tps_sim.recording import rosidl_type_hash

    upstream = get_typestore(Stores.ROS2_JAZZY).hash_rihs01("tf2_msgs/msg/TFMessage")
    assert rosidl_type_hash("tf2_msgs/msg/TFMessage") == upstream
    assert build_typestore().hash_rihs01("tf2_msgs/msg/TFMessage") == upstream


# A tilted lidar (the example mount): x 1.2 m, z 2.0 m, pitch 2 deg, yaw 1 deg.
TILTED_LIDAR_MOUNT = (1.2, 0.0, 2.0, 0.0, float(np.radians(2.0)), float(np.radians(1.0)))
# Ground returns through the recorded frame tree land on z = 0 within the range noise.
GROUND_TOL_M = 0.1


def test_bag_frame_tree_places_a_tilted_lidar(tmp_path):
    """/tf_static and /tf recorded with a non-default lidar mount: the tree from the bag alone
    puts the points back on the world (ground returns at z = 0 in map)."""
    from rosbags.highlevel import AnyReader
    from tps_common.frames import TransformBuffer

    params = BridgeParams(scenario=SCENARIO, seed=SEED, duration_s=0.3, ego_driver="expert",
                          lidar_mount=TILTED_LIDAR_MOUNT, **SMALL_LIDAR)
    path = record(params, tmp_path / "tilted.mcap", progress=False)
    buf = TransformBuffer()
    clouds, tfs = [], {}
    with AnyReader([path], default_typestore=build_typestore()) as reader:
        for conn, _t_ns, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == conv.TOPIC_TF_STATIC:
                for t in msg.transforms:
                    buf.set_transform(t.header.frame_id, t.child_frame_id, _rigid(t.transform),
                                      static=True)
            elif conn.topic == conv.TOPIC_TF:
                t = msg.transforms[0]
                tfs[conv.stamp_to_ns(t.header.stamp)] = t
            elif conn.topic == conv.TOPIC_LIDAR:
                xyz = np.frombuffer(msg.data, np.float32).reshape(-1, 4)[:, :3]
                clouds.append((conv.stamp_to_ns(msg.header.stamp), msg.header.frame_id, xyz))
    assert buf.lookup("ego_vehicle", "ego_vehicle/lidar").almost_equal(
        _from_mount(TILTED_LIDAR_MOUNT), tol_m=1e-9, tol_rad=1e-9)
    assert buf.lookup("base_link", "ego_vehicle/lidar").almost_equal(
        _from_mount(TILTED_LIDAR_MOUNT), tol_m=1e-9, tol_rad=1e-9)
    assert len(clouds) == 4 and set(tfs) == {c[0] for c in clouds}
    for stamp_ns, frame_id, xyz in clouds:
        t = tfs[stamp_ns]
        buf.set_transform(t.header.frame_id, t.child_frame_id, _rigid(t.transform), static=False)
        z_map = buf.lookup("map", frame_id).apply(xyz.astype(np.float64))[:, 2]
        assert np.percentile(z_map, 1) > -GROUND_TOL_M  # nothing below the ground
        assert np.mean(np.abs(z_map) < GROUND_TOL_M) > 0.3  # the ground is seen where it is


def _rigid(transform):
    from tps_common.frames import RigidTransform

    t, q = transform.translation, transform.rotation
    return RigidTransform.from_xyz_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


def _from_mount(mount):
    from tps_common.frames import RigidTransform

    return RigidTransform.from_xyz_rpy(mount[:3], mount[3:])


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
