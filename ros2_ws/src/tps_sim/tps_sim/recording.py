"""Record simulated episodes to rosbag2 with the pure-Python ``rosbags`` library (no DDS).

``tps-sim record --scenario merge --seed 3 --duration 30 -o run.mcap`` runs the world and the
sensors in-process through the bridge's core (:class:`tps_sim.bridge.SimBridge`, the expert
drives by default) and writes the topics the live bridge publishes (``tps_sim.conversions
.frame_messages`` builds the very same messages, ``/tf`` and the traffic lights' states
included), plus the latched ``/planning/route``, ``/tps/instruction``, ``/tps/map/lane_map``,
``/tf_static`` and ``/carla/traffic_lights/info`` at t = 0.

Output: with MCAP storage and a path ending in ``.mcap``, one self-contained ``.mcap`` file
(opens in Foxglove, ``rosbags``' Reader, ``mcap-ros2-support``, ``ros2 bag play FILE``);
otherwise a rosbag2 directory (``metadata.yaml`` + ``.mcap`` or ``.db3``). Bag time = the sim
time the message was published at (the episode starts at t = 0); header stamps are the data's.

CDR bytes come from ``rclpy.serialization.serialize_message`` (the real rosidl types, padding
zeroed by a rosbags round trip so equal episodes give equal bytes); the
schemas come from a ``rosbags`` typestore (ROS 2 Jazzy types, ``tf2_msgs/msg/TFMessage`` among
them, plus ``tps_msgs``/``carla_msgs`` registered from their ``.msg`` files), so each channel
carries the full concatenated message definition and a RIHS01 hash; :func:`check_type_hashes`
verifies those equal rosidl's (for the workspace copies of carla_msgs and tf2_msgs: that they are
field for field the real ones).

Ground truth in the bag carries agent futures (``GroundTruthAgent.future``, 6 x 0.5 s, fewer at
the end of the episode): frames are held back 3 s of sim time until their futures are known.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import deque
from pathlib import Path

import numpy as np
from tps_common.tf import TF_DEPTH

from tps_sim import conversions as conv
from tps_sim.bridge import BridgeParams, SimBridge

CUSTOM_PACKAGES = ("tps_msgs", "carla_msgs")
STORAGES = ("mcap", "sqlite3")
FUTURE_COUNT = 6
FUTURE_STEP_S = 0.5
ROSBAG_VERSION = 8


def msg_dir(package: str) -> Path:
    """Folder with the ``.msg`` files of an interface package (installed share/ first, then the
    workspace source)."""
    for base in (Path(sys.prefix) / "share" / package / "msg",
                 Path(__file__).resolve().parents[2] / package / "msg"):
        if base.is_dir() and any(base.glob("*.msg")):
            return base
    raise FileNotFoundError(f"no .msg files found for interface package {package!r}")


def build_typestore():
    """A rosbags typestore: ROS 2 Jazzy's types plus tps_msgs and carla_msgs from their .msg."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for package in CUSTOM_PACKAGES:
        for path in sorted(msg_dir(package).glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    store.register(types)
    return store


def rosidl_type_hash(msgtype: str) -> str | None:
    """The RIHS01 hash rosidl generated for ``pkg/msg/Name`` (from share/<pkg>/msg/Name.json),
    or None where that file is not installed."""
    package, _, name = msgtype.split("/")
    path = Path(sys.prefix) / "share" / package / "msg" / f"{name}.json"
    if not path.is_file():
        return None
    for entry in json.loads(path.read_text())["type_hashes"]:
        if entry["type_name"] == msgtype:
            return entry["hash_string"]
    return None


def check_type_hashes(store, msgtypes) -> dict[str, tuple[str, str | None]]:
    """msgtype -> (rosbags hash, rosidl hash) for every type whose hashes differ (empty = all
    equal or rosidl's unknown)."""
    bad = {}
    for msgtype in msgtypes:
        ours = store.hash_rihs01(msgtype)
        theirs = rosidl_type_hash(msgtype)
        if theirs is not None and ours != theirs:
            bad[msgtype] = (ours, theirs)
    return bad


def _qos(latched: bool, depth: int | None = None):
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    never = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth or (1 if latched else 5),
               reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
               deadline=never, lifespan=never, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=never, avoid_ros_namespace_conventions=False)


def frame_futures(frames: list, index: int, step_stride: int, count: int = FUTURE_COUNT
                  ) -> dict[int, np.ndarray]:
    """Agent id -> (count, 2) future map centres [m] of ``frames[index]`` (ego included, id of
    the ego), taken every ``step_stride`` frames; NaN where the agent is gone or the list ends."""
    out: dict[int, np.ndarray] = {}
    state = frames[index].state
    for agent in (state.ego, *state.agents):
        out[int(agent.id)] = np.full((count, 2), np.nan)
    for j in range(1, count + 1):
        k = index + j * step_stride
        if k >= len(frames):
            break
        later = frames[k].state
        for agent in (later.ego, *later.agents):
            fut = out.get(int(agent.id))
            if fut is not None:
                fut[j - 1] = (agent.center[0], agent.center[1])
    return out


class BagWriter:
    """rosbag2 writer for the bridge topics (register connections once, write messages)."""

    def __init__(self, path: str | os.PathLike, storage: str = "mcap", *,
                 compress: bool = False) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.target = Path(path)
        if self.target.exists():
            raise FileExistsError(f"output {self.target} exists already; not overwriting")
        self.single_file = storage == "mcap" and self.target.suffix == ".mcap"
        if self.single_file:
            self._tmpdir = Path(tempfile.mkdtemp(prefix=".bag-", dir=self.target.parent or "."))
            bag_dir = self._tmpdir / self.target.stem
        else:
            self._tmpdir = None
            bag_dir = self.target
        self.store = build_typestore()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(bag_dir, version=ROSBAG_VERSION, storage_plugin=plugin)
        if compress:  # zstd: MCAP chunks, or per message for sqlite3
            mode = CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE
            self.writer.set_compression(mode, CompressionFormat.ZSTD)
        self.writer.open()
        self.connections = {}
        for topic, msgtype in conv.TOPIC_TYPES.items():
            self.connections[topic] = self.writer.add_connection(
                topic, msgtype, typestore=self.store,
                offered_qos_profiles=[_qos(topic in conv.LATCHED_TOPICS,
                                           TF_DEPTH if topic == conv.TOPIC_TF else None)])
        self.bag_dir = bag_dir
        self.count = 0

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        """Serialize an rclpy message to CDR and write it at bag time ``stamp_ns``.

        rclpy's serializer leaves CDR alignment padding uninitialised (the bytes differ between
        runs); a round trip through the rosbags typestore zeroes it (~1 ms for a 30k-point
        cloud), so the same episode gives byte-identical bags."""
        from rclpy.serialization import serialize_message

        msgtype = conv.TOPIC_TYPES[topic]
        raw = self.store.serialize_cdr(self.store.deserialize_cdr(serialize_message(msg), msgtype),
                                       msgtype)
        self.writer.write(self.connections[topic], int(stamp_ns), raw)
        self.count += 1

    def close(self) -> Path:
        """Finish the bag; returns the path written (the .mcap file or the bag directory)."""
        self.writer.close()
        if not self.single_file:
            return self.bag_dir
        produced = list(self.bag_dir.glob("*.mcap"))
        if len(produced) != 1:
            raise RuntimeError(f"expected one .mcap file in {self.bag_dir}, found {produced}")
        os.replace(produced[0], self.target)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        return self.target

    def abort(self) -> None:
        """Drop a partially written bag."""
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - best effort cleanup of a failed recording
            pass
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def record(params: BridgeParams, out: str | os.PathLike, *, storage: str = "mcap",
           compress: bool = False, progress: bool = True) -> Path:
    """Run one episode through the bridge core (no DDS) and write it as a rosbag2.

    Args:
        params: the episode (scenario, seed, duration, ego_driver, sensors, faults). Expert or
            external (neutral control: the ego coasts) ego; steps never wait for a controller.
        out: output path (see the module docstring for file vs directory).
        storage: ``mcap`` (default) or ``sqlite3``.
        compress: zstd compression (MCAP chunks; sqlite3: per message).
        progress: show a tqdm bar on stderr.

    Returns:
        The path of the bag.
    """
    from tqdm import tqdm

    params = BridgeParams(**{**params.__dict__, "synchronous": False, "step_period_s": 0.0})
    bag = BagWriter(out, storage, compress=compress)
    core = None
    try:
        core = SimBridge(params)
        stride = max(1, int(round(FUTURE_STEP_S / params.dt_s)))
        horizon = stride * FUTURE_COUNT
        bag.write(conv.TOPIC_ROUTE, conv.path_msg(core.route, 0.0), 0)
        bag.write(conv.TOPIC_INSTRUCTION, conv.instruction_msg(core.instruction, 0.0), 0)
        bag.write(conv.TOPIC_LANE_MAP, conv.lane_map_msg(core.lane_map, 0.0), 0)
        bag.write(conv.TOPIC_LIGHT_INFO, conv.traffic_light_info_msg(core.light_heads), 0)
        bag.write(conv.TOPIC_TF_STATIC, conv.tf_static_msg(core.rig, 0.0,
                                                           lidar=params.lidar_enabled,
                                                           camera=params.camera_enabled), 0)
        frames: deque = deque()
        written = 0
        total = int(round(params.duration_s / params.dt_s)) + 1
        bar = tqdm(total=total, desc=f"record {params.scenario}/{params.seed}", unit="step",
                   disable=not progress, file=sys.stderr)

        def flush_one() -> None:
            nonlocal written
            frame_list = list(frames)
            futures = frame_futures(frame_list, 0, stride)
            frame = frames.popleft()
            # Bag time = publication time (like a recorder's receive time); a delayed sensor
            # message keeps its older header stamp.
            ns = max(0, int(round(frame.stamp_s * 1e9)))
            for topic, msg in conv.frame_messages(frame, params.scenario, params.seed,
                                                  core.camera_info_fields, futures, rig=core.rig):
                bag.write(topic, msg, ns)
            written += 1

        now = 0.0
        frames.append(core.start(now))
        bar.update(1)
        while not core.done:
            now += 1.0
            frame = core.poll(now)
            if frame is None:
                break
            frames.append(frame)
            bar.update(1)
            if len(frames) > horizon:
                flush_one()
        while frames:
            flush_one()
        bar.close()
    except BaseException:
        bag.abort()
        if core is not None:
            core.close()
        raise
    core.close()
    return bag.close()
