"""Reading simulation dataset shards (one ``.npz`` per episode, written by ``tps-sim dataset``).

Shard layout (see docs/CONTRACTS.md and tps_sim.dataset): ``points`` (P, 4) lidar frame +
``point_offsets`` (T+1,), ``gt_boxes`` (G, 9) [x, y, z, l, w, h, yaw, vx, vy] base_link +
``gt_offsets`` (T+1,), ``gt_class`` (G,), ``gt_id`` (G,), ``gt_num_points`` (G,), ``t_s`` (T,),
``ego_pose`` (T, >=3), ``meta_json`` (with ``clutter``), ``static_boxes`` (S, 8) map frame.

Parked cars are cars. The simulator places them as static clutter (``static_boxes`` material
``MAT_PARKED_CAR``), not as SUMO agents, so a shard's ``gt_boxes`` lists only the traffic. Like
nuScenes, which annotates a parked car as ``vehicle.car`` (attribute ``vehicle.parked``), the
detector's ground truth here includes them: :func:`episode_frames_from_arrays` appends every
parked car as a class-1 box with zero velocity, an id from :data:`PARKED_ID_BASE` up and its lidar
point count measured by a point-in-box test. ``parked_cars=False`` gives the traffic-only ground
truth (reported beside the default by ``tps-eval detector --traffic-only``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tps_common.geometry import points_in_footprint, to_local, wrap_angle
from tps_perception.backends import repo_root

MAT_PARKED_CAR = 14          # tps_sim.sensors.scene3d.MAT_PARKED_CAR (not imported: no sim needed here)
PARKED_ID_BASE = 1_000_000   # gt_id of parked car k of an episode: PARKED_ID_BASE + k
CLASS_CAR = 1
DEFAULT_LIDAR_HEIGHT_M = 1.8


@dataclass
class Frame:
    """One lidar frame with its ground truth."""

    points: np.ndarray      # (N, 4) float32 lidar frame
    gt_boxes: np.ndarray    # (G, 9) float32 base_link
    gt_class: np.ndarray    # (G,) uint8
    gt_id: np.ndarray       # (G,) int32
    gt_num_points: np.ndarray  # (G,) int32
    t_s: float
    ego_pose: np.ndarray | None  # (3,) map x, y, yaw or None
    clutter: str
    seed: int
    scenario: str
    index: int


def default_data_root() -> Path:
    return repo_root() / "data" / "sim"


def shard_paths(split: str, root: Path | None = None) -> list[Path]:
    """All shards of a split, sorted (data/sim/<split>/<scenario>/seed<seed>.npz)."""
    root = Path(root) if root else default_data_root()
    return sorted((root / split).glob("*/seed*.npz"))


def _ego_pose_xyyaw(ego: np.ndarray | None, k: int) -> np.ndarray | None:
    if ego is None or ego.ndim != 2 or ego.shape[1] < 3:
        return None
    row = ego[k]
    # (x, y, yaw) or (x, y, z, yaw) or (x, y, z, roll, pitch, yaw): yaw is the last angle we know
    if ego.shape[1] == 3:
        return row[:3].astype(np.float64)
    if ego.shape[1] == 4:
        return np.array([row[0], row[1], row[3]], np.float64)
    return np.array([row[0], row[1], row[5] if ego.shape[1] >= 6 else row[-1]], np.float64)


def in_footprint(xy: np.ndarray, box: np.ndarray, margin_m: float) -> np.ndarray:
    """(N,) bool: which points ``xy`` (N, >=2) lie in the oriented footprint of ``box`` (>=7:
    x, y, z, l, w, h, yaw), grown by ``margin_m`` on every side (``tps_common.geometry``)."""
    return points_in_footprint(xy, box[:2], float(box[6]), float(box[3]), float(box[4]), margin_m)


def points_in_boxes(points_bl: np.ndarray, boxes: np.ndarray, margin_m: float = 0.05) -> np.ndarray:
    """Number of points inside each oriented box.

    Args:
        points_bl: (N, >=3) points in base_link (z above ground).
        boxes: (B, >=7) x, y, z (centre), l, w, h, yaw in base_link.
        margin_m: slack on every face (range noise).

    Returns:
        (B,) int32 counts.
    """
    out = np.zeros(len(boxes), np.int32)
    if len(points_bl) == 0:
        return out
    for k, b in enumerate(boxes):
        reach = 0.5 * float(np.hypot(b[3], b[4])) + margin_m
        near = (np.abs(points_bl[:, 0] - b[0]) < reach) & (np.abs(points_bl[:, 1] - b[1]) < reach)
        if not near.any():
            continue
        p = points_bl[near]
        inside = in_footprint(p, b, margin_m) & (np.abs(p[:, 2] - b[2]) <= 0.5 * b[5] + margin_m)
        out[k] = int(inside.sum())
    return out


def parked_car_boxes(static_boxes: np.ndarray, ego_pose: np.ndarray, points_lidar: np.ndarray,
                     lidar_height_m: float, max_range_m: float = 80.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parked cars of a frame as ground-truth boxes.

    Args:
        static_boxes: (S, 8) x, y, z, l, w, h, yaw, material in map.
        ego_pose: (3,) x, y, yaw of base_link in map.
        points_lidar: (N, >=3) the frame's cloud in the lidar frame.
        lidar_height_m: lidar frame origin above base_link.
        max_range_m: parked cars farther than this are left out.

    Returns:
        boxes (P, 9) base_link [x, y, z, l, w, h, yaw, 0, 0], ids (P,) int32
        (PARKED_ID_BASE + index among the parked cars), num_points (P,) int32.
    """
    st = np.asarray(static_boxes, np.float64).reshape(-1, 8)
    which = np.nonzero(np.round(st[:, 7]).astype(int) == MAT_PARKED_CAR)[0]
    if len(which) == 0 or ego_pose is None:
        return np.zeros((0, 9), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32)
    ex, ey, eyaw = (float(v) for v in ego_pose[:3])
    sb = st[which]
    x, y = to_local(sb[:, :2], (ex, ey), eyaw).T
    yaw = wrap_angle(sb[:, 6] - eyaw)
    boxes = np.stack([x, y, sb[:, 2], sb[:, 3], sb[:, 4], sb[:, 5], yaw,
                      np.zeros(len(sb)), np.zeros(len(sb))], axis=1).astype(np.float32)
    ids = (PARKED_ID_BASE + np.arange(len(which))).astype(np.int32)
    near = np.hypot(x, y) < max_range_m
    boxes, ids = boxes[near], ids[near]
    pts = np.asarray(points_lidar[:, :3], np.float32).copy()
    pts[:, 2] += np.float32(lidar_height_m)
    return boxes, ids, points_in_boxes(pts, boxes)


def episode_frames_from_arrays(z, seed: int = -1, scenario: str = "", stride: int = 1,
                               parked_cars: bool = True) -> Iterator[Frame]:
    """Frames of one episode held in a dict-like of arrays (an open npz or generate_episode output).

    ``parked_cars``: add the parked cars of ``static_boxes`` to the ground truth as cars (see the
    module docstring); False keeps the traffic only.
    """
    meta = json.loads(str(z["meta_json"])) if "meta_json" in z else {}
    lidar_height = float(meta.get("lidar_height_m", DEFAULT_LIDAR_HEIGHT_M))
    statics = z["static_boxes"] if (parked_cars and "static_boxes" in z) else None
    clutter = str(meta.get("clutter", "unknown"))
    seed = int(meta.get("seed", seed))
    scenario = str(meta.get("scenario", scenario))
    po = z["point_offsets"]
    go = z["gt_offsets"]
    pts = z["points"]
    boxes = z["gt_boxes"]
    cls = z["gt_class"]
    ids = z["gt_id"] if "gt_id" in z else np.zeros(len(cls), np.int32)
    npts = z["gt_num_points"] if "gt_num_points" in z else np.ones(len(cls), np.int32)
    t = z["t_s"]
    ego = z["ego_pose"] if "ego_pose" in z else None
    for k in range(0, len(t), stride):
        a, b = int(go[k]), int(go[k + 1])
        frame_pts = np.asarray(pts[int(po[k]):int(po[k + 1])], np.float32)
        pose = _ego_pose_xyyaw(ego, k)
        f_boxes = np.asarray(boxes[a:b], np.float32)
        f_cls = np.asarray(cls[a:b], np.uint8)
        f_ids = np.asarray(ids[a:b], np.int32)
        f_npts = np.asarray(npts[a:b], np.int32)
        if statics is not None and pose is not None:
            pb, pid, pn = parked_car_boxes(statics, pose, frame_pts, lidar_height)
            if len(pb):
                f_boxes = np.concatenate([f_boxes, pb])
                f_cls = np.concatenate([f_cls, np.full(len(pb), CLASS_CAR, np.uint8)])
                f_ids = np.concatenate([f_ids, pid])
                f_npts = np.concatenate([f_npts, pn])
        yield Frame(
            points=frame_pts,
            gt_boxes=f_boxes,
            gt_class=f_cls,
            gt_id=f_ids,
            gt_num_points=f_npts,
            t_s=float(t[k]),
            ego_pose=pose,
            clutter=clutter,
            seed=seed,
            scenario=scenario,
            index=k,
        )


def episode_frames(path: Path, stride: int = 1, parked_cars: bool = True) -> Iterator[Frame]:
    """Frames of one shard file (``parked_cars``: see :func:`episode_frames_from_arrays`)."""
    path = Path(path)
    seed = int(path.stem.replace("seed", "")) if path.stem.startswith("seed") else -1
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    yield from episode_frames_from_arrays(data, seed=seed, scenario=path.parent.name, stride=stride,
                                          parked_cars=parked_cars)


def synthetic_frames(seed: int, n_frames: int = 1, clutter: str = "medium", n_vehicles: int = 40,
                     agent_speed_mps: float = 8.0, dt_s: float = 0.1) -> list[Frame]:
    """Frames from tps_sim's seeded synthetic road scene and its real lidar model (no SUMO).

    For tests and smoke runs only (the shipped model trains on SUMO episodes). The ego stands
    still at the scene's ego pose; every agent drives along its heading at ``agent_speed_mps``.
    """
    from tps_sim.sensors.lidar import LidarModel, to_xyzi
    from tps_sim.sensors.scene3d import BoxSet, Scene3D
    from tps_sim.sensors.synthetic import synthetic_scene

    base = synthetic_scene(seed, n_vehicles=n_vehicles, clutter=clutter)
    lidar = LidarModel()
    rng = np.random.default_rng(seed)
    ex, ey, eyaw = base.ego_pose
    frames = []
    a = base.agents
    vel = agent_speed_mps * np.stack([np.cos(a.yaws), np.sin(a.yaws)], axis=1)
    for k in range(n_frames):
        t = k * dt_s
        centers = a.centers.copy()
        centers[:, :2] += vel * t
        agents = BoxSet(a.ids, centers, a.sizes, a.yaws, a.materials)
        scene = Scene3D(agents, base.statics, base.road, base.ego_pose, base.ego_size, t)
        scan = lidar.scan(scene, rng)
        pts = to_xyzi(scan)
        xy = to_local(centers[:, :2], (ex, ey), eyaw)
        v_bl = to_local(vel, (0.0, 0.0), eyaw)
        bx = np.stack([xy[:, 0], xy[:, 1], centers[:, 2], a.sizes[:, 0], a.sizes[:, 1],
                       a.sizes[:, 2], a.yaws - eyaw, v_bl[:, 0], v_bl[:, 1]], axis=1).astype(np.float32)
        npts = np.array([(scan.hit_id == i).sum() for i in a.ids], np.int32)
        frames.append(Frame(pts, bx, a.materials.astype(np.uint8), a.ids.astype(np.int32), npts, t,
                            np.array([ex, ey, eyaw]), clutter, seed, "synthetic", k))
    return frames
