"""Reading simulation dataset shards (one ``.npz`` per episode, written by ``tps-sim dataset``).

Shard layout (see docs/CONTRACTS.md and tps_sim.dataset): ``points`` (P, 4) lidar frame +
``point_offsets`` (T+1,), ``gt_boxes`` (G, 9) [x, y, z, l, w, h, yaw, vx, vy] base_link +
``gt_offsets`` (T+1,), ``gt_class`` (G,), ``gt_id`` (G,), ``gt_num_points`` (G,), ``t_s`` (T,),
``ego_pose`` (T, >=3), ``meta_json`` (with ``clutter``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tps_perception.backends import repo_root


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


def episode_frames_from_arrays(z, seed: int = -1, scenario: str = "", stride: int = 1) -> Iterator[Frame]:
    """Frames of one episode held in a dict-like of arrays (an open npz or generate_episode output)."""
    meta = json.loads(str(z["meta_json"])) if "meta_json" in z else {}
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
        yield Frame(
            points=np.asarray(pts[int(po[k]):int(po[k + 1])], np.float32),
            gt_boxes=np.asarray(boxes[a:b], np.float32),
            gt_class=np.asarray(cls[a:b], np.uint8),
            gt_id=np.asarray(ids[a:b], np.int32),
            gt_num_points=np.asarray(npts[a:b], np.int32),
            t_s=float(t[k]),
            ego_pose=_ego_pose_xyyaw(ego, k),
            clutter=clutter,
            seed=seed,
            scenario=scenario,
            index=k,
        )


def episode_frames(path: Path, stride: int = 1) -> Iterator[Frame]:
    """Frames of one shard file."""
    path = Path(path)
    seed = int(path.stem.replace("seed", "")) if path.stem.startswith("seed") else -1
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    yield from episode_frames_from_arrays(data, seed=seed, scenario=path.parent.name, stride=stride)


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
    c, s = np.cos(eyaw), np.sin(eyaw)
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
        dx, dy = centers[:, 0] - ex, centers[:, 1] - ey
        bx = np.stack([c * dx + s * dy, -s * dx + c * dy, centers[:, 2], a.sizes[:, 0], a.sizes[:, 1],
                       a.sizes[:, 2], a.yaws - eyaw, c * vel[:, 0] + s * vel[:, 1],
                       -s * vel[:, 0] + c * vel[:, 1]], axis=1).astype(np.float32)
        npts = np.array([(scan.hit_id == i).sum() for i in a.ids], np.int32)
        frames.append(Frame(pts, bx, a.materials.astype(np.uint8), a.ids.astype(np.int32), npts, t,
                            np.array([ex, ey, eyaw]), clutter, seed, "synthetic", k))
    return frames
