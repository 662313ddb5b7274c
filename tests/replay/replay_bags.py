"""Bags for the replay tests: the simulator's reference bag and a "foreign driver" copy of it written
with ``rosbags`` (another topic, field layout, frame id and lidar mount, sqlite3 storage, some
corrupt and out-of-order messages)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SIM_BAG = REPO / "tests" / "data" / "replay" / "cut_in_s1.mcap"
SIM_LIDAR = "/carla/ego_vehicle/lidar"
SIM_LIDAR_FRAME = "ego_vehicle/lidar"
BASE_FRAME = "base_link"
FOREIGN_LIDAR = "/velodyne_points"
FOREIGN_FRAME = "velodyne"
# The foreign lidar's mount in base_link: x, y, z [m], roll, pitch, yaw [rad] (the simulator's is
# (0, 0, 1.8, 0, 0, 0)).
FOREIGN_MOUNT = (1.1, -0.2, 2.05, 0.01, 0.03, 0.08)
# x, y, z float64, 4 bytes padding, reflectivity float32, ring uint16, 2 bytes padding, time
# float32, 4 bytes padding: a 48-byte point (a Velodyne/Ouster-like layout).
FOREIGN_POINT_STEP = 48
FOREIGN_FIELDS = (("x", 0, 8), ("y", 8, 8), ("z", 16, 8), ("reflectivity", 28, 7), ("ring", 32, 4),
                  ("time", 36, 7))   # (name, offset, PointField datatype)
PF_DTYPES = {7: "<f4", 8: "<f8", 4: "<u2"}
ORGANISED_ROWS = 2


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll) (REP-103 fixed axes)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def quaternion_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of the same rotation."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


@dataclass
class ForeignBag:
    """What :func:`write_foreign_bag` wrote (for the assertions)."""

    path: Path
    frames: int
    corrupt: int
    out_of_order: int


def write_foreign_bag(src: Path, dst: Path, *, corrupt_every: int = 13, duplicate_frame: int = 5) -> ForeignBag:
    """Copy ``src`` (a simulator bag) to a rosbag2 directory ``dst`` (sqlite3) as a foreign driver
    would record it: the lidar on ``/velodyne_points`` in frame ``velodyne`` at ``FOREIGN_MOUNT``
    (points re-expressed there, float64 xyz, padding, ring and time fields, ``reflectivity`` for
    the intensity, organised in 2 rows when the point count is even), its extrinsic in ``/tf_static`` (the simulator's lidar edge replaced). Every
    ``corrupt_every``-th lidar message is followed by a truncated copy (undecodable), and frame
    ``duplicate_frame``'s cloud is written once more after the next frame (its stamp goes back).
    The camera is left out (the foreign rig has none)."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tps_sim.recording import build_typestore

    store = build_typestore()
    rot = rotation_rpy(*FOREIGN_MOUNT[3:])
    trans = np.array(FOREIGN_MOUNT[:3])
    frames = corrupt = out_of_order = 0
    held = None
    with AnyReader([src], default_typestore=store) as reader:
        sim_mount = None
        for conn, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic == "/tf_static"]):
            for tf in reader.deserialize(raw, conn.msgtype).transforms:
                if tf.child_frame_id == SIM_LIDAR_FRAME:
                    t, q = tf.transform.translation, tf.transform.rotation
                    sim_mount = (np.array([t.x, t.y, t.z]), quat_matrix(q.x, q.y, q.z, q.w))
        assert sim_mount is not None, f"{src}: no {SIM_LIDAR_FRAME} edge in /tf_static"
        writer = Writer(dst, version=8, storage_plugin=StoragePlugin.SQLITE3)
        writer.open()
        conns = {}

        def conn_for(topic: str, msgtype: str, qos):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=qos)
            return conns[topic]

        for conn, t_ns, raw in reader.messages():
            qos = conn.ext.offered_qos_profiles
            if "rgb_front" in conn.topic or conn.topic == "/clock":
                continue
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == "/tf_static":
                for tf in msg.transforms:
                    if tf.child_frame_id == SIM_LIDAR_FRAME:
                        tf.child_frame_id = FOREIGN_FRAME
                        tf.header.frame_id = BASE_FRAME
                        x, y, z = FOREIGN_MOUNT[:3]
                        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = x, y, z
                        q = quaternion_rpy(*FOREIGN_MOUNT[3:])
                        (tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z,
                         tf.transform.rotation.w) = q
                writer.write(conn_for(conn.topic, conn.msgtype, qos), t_ns, store.serialize_cdr(msg, conn.msgtype))
                continue
            if conn.topic != SIM_LIDAR:
                writer.write(conn_for(conn.topic, conn.msgtype, qos), t_ns, raw)
                continue
            foreign = to_foreign_cloud(msg, store, sim_mount, rot, trans)
            data = bytes(store.serialize_cdr(foreign, conn.msgtype))
            lidar_conn = conn_for(FOREIGN_LIDAR, conn.msgtype, qos)
            if held is not None:
                writer.write(lidar_conn, t_ns, held)     # an older stamp after a newer one
                out_of_order += 1
                held = None
            writer.write(lidar_conn, t_ns, data)
            if frames == duplicate_frame:
                held = data
            frames += 1
            if frames % corrupt_every == 0:
                writer.write(lidar_conn, t_ns, data[: len(data) // 3])
                corrupt += 1
        writer.close()
    return ForeignBag(dst, frames, corrupt, out_of_order)


def quat_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Rotation matrix of a unit quaternion."""
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def to_foreign_cloud(msg, store, sim_mount, rot: np.ndarray, trans: np.ndarray):
    """The simulator cloud ``msg`` (rosbags message) re-expressed in the foreign frame and layout."""
    n = int(msg.width) * int(msg.height)
    xyzi = np.frombuffer(bytes(msg.data), dtype="<f4").reshape(n, 4).astype(np.float64)
    t_sim, r_sim = sim_mount
    base = xyzi[:, :3] @ r_sim.T + t_sim          # T_base<-sim_lidar
    local = (base - trans) @ rot                   # T_foreign<-base = (T_base<-foreign)^-1
    dtype = np.dtype({"names": [f[0] for f in FOREIGN_FIELDS],
                      "formats": [PF_DTYPES[f[2]] for f in FOREIGN_FIELDS],
                      "offsets": [f[1] for f in FOREIGN_FIELDS], "itemsize": FOREIGN_POINT_STEP})
    out = np.zeros(n, dtype=dtype)
    out["x"], out["y"], out["z"] = local[:, 0], local[:, 1], local[:, 2]
    out["reflectivity"] = xyzi[:, 3]
    elevation = np.degrees(np.arctan2(local[:, 2], np.hypot(local[:, 0], local[:, 1])))
    out["ring"] = np.clip(np.round(elevation + 16), 0, 31).astype(np.uint16)
    out["time"] = np.linspace(0.0, 0.1, n, dtype=np.float32)
    pf = store.types["sensor_msgs/msg/PointField"]
    fields = [pf(name=name, offset=off, datatype=dt, count=1) for name, off, dt in FOREIGN_FIELDS]
    cls = store.types["sensor_msgs/msg/PointCloud2"]
    hdr = msg.header
    hdr.frame_id = FOREIGN_FRAME
    # Organised (2 rows) whenever the point count allows: the same points, row by row.
    height = ORGANISED_ROWS if n % ORGANISED_ROWS == 0 else 1
    width = n // height
    return cls(header=hdr, height=height, width=width, fields=fields, is_bigendian=False,
               point_step=FOREIGN_POINT_STEP, row_step=FOREIGN_POINT_STEP * width,
               data=np.frombuffer(out.tobytes(), dtype=np.uint8), is_dense=bool(msg.is_dense))


def foreign_config_text(nodes: tuple[str, ...]) -> str:
    """The replay configuration that adapts the foreign bag (no code change)."""
    return "\n".join([
        f"nodes: [{', '.join(nodes)}]",
        "remap: {" + f"{FOREIGN_LIDAR}: {SIM_LIDAR}" + "}",
        "lidar:",
        "  fields: {reflectivity: intensity}",
        "set:",
        f"  - nodes.perception.parameters.expected_frame={FOREIGN_FRAME}",
        f"  - nodes.fallback.parameters.lidar_frame={FOREIGN_FRAME}",
        "time: {non_monotonic: drop}",
        "",
    ])
