"""PNG plots of a replay (matplotlib, Agg; no ROS): timelines (ego speed and planned speed,
monitor certainty, selected source and monitor state, detections per frame, per-node latency),
per-node latency distributions, and BEV snapshots in ``map`` (lane map, route, ground-truth agents,
detections with ids in class colours, lidar points, the selected / fallback / candidate
trajectories, the ego box)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from tps_common.geometry import box_corners  # noqa: E402

from tps_eval.bev import BACKGROUND_COLOUR, CLASS_COLOURS, EGO_COLOUR, ROAD_COLOUR, ROUTE_COLOUR  # noqa: E402
from tps_eval.replay.analysis import SOURCE_NAMES, STATE_NAMES, BagFacts, Series  # noqa: E402

TRAJECTORY_STYLE = {"selected": ("#1f3fff", "-", 2.4), "fallback": ("#ff7f0e", "--", 1.6),
                    "candidate": ("#9467bd", ":", 1.6)}
SNAPSHOTS = 3
VIEW_RADIUS_M = 40.0
DPI = 80


def _t0(series: Series) -> float:
    times = [tr.stamp_s for tr in series.selected] + [float(t) for t in series.odometry[:, 0]]
    return min(times) if times else 0.0


def timeline_png(series: Series, path: Path, title: str = "") -> Path:
    """Stacked timelines against sim time (module docstring)."""
    t0 = _t0(series)
    fig, axes = plt.subplots(5, 1, figsize=(8, 10), dpi=DPI, sharex=True)
    ax = axes[0]
    odo = series.odometry
    if len(odo):
        ax.plot(odo[:, 0] - t0, odo[:, 4], color="black", lw=1.2, label="ego (logged odometry)")
    if series.selected:
        ax.plot([t.stamp_s - t0 for t in series.selected],
                [float(np.interp(1.0, t.t_s, t.speed)) if len(t.t_s) > 1 else np.nan for t in series.selected],
                color=TRAJECTORY_STYLE["selected"][0], lw=1.0, label="selected plan at +1 s")
    ax.set_ylabel("speed [m/s]")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    if series.monitor:
        m = np.array(series.monitor, np.float64)
        ax.plot(m[:, 0] - t0, m[:, 2], color="#2ca02c")
        ax.set_ylim(-0.05, 1.05)
    else:
        ax.text(0.5, 0.5, "no monitor in the replayed graph: no certainty", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="#555555")
    ax.set_ylabel("certainty")
    ax = axes[2]
    if series.selected:
        ax.step([t.stamp_s - t0 for t in series.selected], [t.source for t in series.selected], where="post",
                color=TRAJECTORY_STYLE["selected"][0], label="selected source")
    if series.monitor:
        m = np.array(series.monitor, np.float64)
        ax.step(m[:, 0] - t0, m[:, 1] + 0.1, where="post", color="#2ca02c", label="monitor state (+0.1)")
        ax.set_yticks(list(STATE_NAMES), [f"{SOURCE_NAMES[k]} / {STATE_NAMES[k]}" for k in STATE_NAMES],
                      fontsize=6)
    else:
        ax.set_yticks(list(SOURCE_NAMES), list(SOURCE_NAMES.values()), fontsize=7)
    ax.set_ylim(-0.5, 3.5)
    ax.set_ylabel("state")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")
    ax = axes[3]
    if series.detections:
        ax.plot([d.header.stamp.sec + d.header.stamp.nanosec * 1e-9 - t0 for d in series.detections],
                [len(d.agents) for d in series.detections], ".-", color="#1f77b4", lw=0.8, ms=3)
    ax.set_ylabel("detections")
    ax = axes[4]
    for node, pts in series.latency.items():
        if pts:
            a = np.array(pts, np.float64)
            ax.plot(a[:, 0] - t0, a[:, 1], ".-", lw=0.7, ms=2, label=node)
    ax.set_ylabel("latency [ms]")
    ax.set_xlabel("sim time [s]")
    if series.latency:
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def latency_png(latency: dict, path: Path) -> Path | None:
    """Box plot of each node's input-to-output latency [ms]."""
    data = {n: [v for _, v in pts] for n, pts in latency.items() if pts}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=DPI)
    ax.boxplot(list(data.values()), tick_labels=list(data), whis=(1, 99), showfliers=True)
    ax.set_ylabel("input -> output latency [ms]")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _lane_polygon(centre: np.ndarray, width: float) -> np.ndarray | None:
    if len(centre) < 2:
        return None
    d = np.gradient(centre, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    left, right = centre + n * width / 2, centre - n * width / 2
    return np.concatenate([left, right[::-1]])


def _sensor_to_base(facts: BagFacts, frame_id: str):
    from tps_common.frames import FrameLookupError, TransformBuffer

    buf = TransformBuffer()
    for parent, child, tr in facts.static_edges:
        try:
            buf.set_transform(parent, child, tr, static=True)
        except ValueError:
            continue
    try:
        return buf.lookup("base_link", frame_id)
    except (FrameLookupError, ValueError, KeyError):
        return None


def bev_png(series: Series, facts: BagFacts, t: float, path: Path, title: str = "") -> Path | None:
    """One BEV snapshot at sim time ``t`` (module docstring); None without a logged ego pose."""
    pose = facts.pose_at(t)
    if pose is None:
        return None
    x0, y0, yaw0 = pose
    fig, ax = plt.subplots(figsize=(6, 6), dpi=DPI)
    ax.set_facecolor(BACKGROUND_COLOUR)
    ax.set_aspect("equal")
    polys = [p for p in (_lane_polygon(c, w) for c, w in zip(facts.lane_centerlines, facts.lane_widths,
                                                               strict=True)) if p is not None]
    if polys:
        ax.add_collection(PolyCollection(polys, facecolors=ROAD_COLOUR, edgecolors="#bbbbbb", linewidths=0.3,
                                         zorder=1))
    if len(facts.route) >= 2:
        ax.plot(facts.route[:, 0], facts.route[:, 1], "--", color=ROUTE_COLOUR, lw=1.2, zorder=2, label="route")
    if facts.lidar_frames:
        times = np.array([f[0] for f in facts.lidar_frames])
        i = int(np.argmin(np.abs(times - t)))
        ft, frame_id, pts = facts.lidar_frames[i]
        lidar_pose = facts.pose_at(ft)
        tr = _sensor_to_base(facts, frame_id)
        if lidar_pose is not None and tr is not None and abs(ft - t) < 0.5:
            base = tr.apply(pts)
            keep = (base[:, 2] > 0.2) & (base[:, 2] < 3.0)
            c, s = math.cos(lidar_pose[2]), math.sin(lidar_pose[2])
            xy = base[keep, :2]
            mx = lidar_pose[0] + c * xy[:, 0] - s * xy[:, 1]
            my = lidar_pose[1] + s * xy[:, 0] + c * xy[:, 1]
            ax.scatter(mx, my, s=0.3, c="#303030", alpha=0.5, linewidths=0, zorder=3)
    gt = facts.ground_truth_at(t)
    if gt is not None and len(gt.agents):
        corners = box_corners(gt.agents[:, :2], gt.agents[:, 2], gt.agents[:, 3], gt.agents[:, 4])
        ax.add_collection(PolyCollection(list(corners), facecolors="none", edgecolors="#333333",
                                         linewidths=0.8, linestyles="--", zorder=4))
    det = min(series.detections, key=lambda d: abs(d.header.stamp.sec + d.header.stamp.nanosec * 1e-9 - t),
              default=None)
    if det is not None and abs(det.header.stamp.sec + det.header.stamp.nanosec * 1e-9 - t) < 0.2 and det.agents:
        c, s = math.cos(yaw0), math.sin(yaw0)
        xy = np.array([[x0 + c * a.center.x - s * a.center.y, y0 + s * a.center.x + c * a.center.y]
                       for a in det.agents])
        yaws = np.array([yaw0 + a.yaw for a in det.agents])
        corners = box_corners(xy, yaws, [a.size.x for a in det.agents], [a.size.y for a in det.agents])
        colours = [CLASS_COLOURS.get(int(a.class_id), CLASS_COLOURS[0]) for a in det.agents]
        ax.add_collection(PolyCollection(list(corners), facecolors=colours, edgecolors="black", linewidths=0.5,
                                         alpha=0.85, zorder=5))
        ax.add_collection(LineCollection(list(corners[:, :2, :]), colors="black", linewidths=1.3, zorder=5))
        for a, (px, py) in zip(det.agents, xy, strict=True):
            if abs(px - x0) < VIEW_RADIUS_M and abs(py - y0) < VIEW_RADIUS_M:
                ax.text(px, py + 1.5, str(int(a.id)), fontsize=6, ha="center", zorder=9)
    for name, trajs in (("candidate", series.candidate), ("fallback", series.fallback),
                        ("selected", series.selected)):
        tr = min(trajs, key=lambda x: abs(x.stamp_s - t), default=None)
        if tr is not None and abs(tr.stamp_s - t) < 0.2 and len(tr.xy) >= 2:
            colour, style, lw = TRAJECTORY_STYLE[name]
            ax.plot(tr.xy[:, 0], tr.xy[:, 1], style, color=colour, lw=lw, zorder=7,
                    label=f"{name} ({SOURCE_NAMES.get(tr.source, tr.source)})")
    length, width = (gt.ego[3], gt.ego[4]) if gt is not None else (4.6, 1.9)
    ego = box_corners([[x0, y0]], [yaw0], [length], [width])[0]
    ax.add_collection(PolyCollection([ego], facecolors=EGO_COLOUR, edgecolors="black", linewidths=1.0, zorder=8))
    ax.set_xlim(x0 - VIEW_RADIUS_M, x0 + VIEW_RADIUS_M)
    ax.set_ylim(y0 - VIEW_RADIUS_M, y0 + VIEW_RADIUS_M)
    ax.set_xlabel("x [m] (map)")
    ax.set_ylabel("y [m] (map)")
    ax.set_title(f"{title}  t = {t:.1f} s   (dashed: ground truth; filled: detections)", fontsize=8)
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def snapshot_times(series: Series, facts: BagFacts, count: int = SNAPSHOTS) -> list[float]:
    """Evenly spread instants: the kept lidar frames' stamps (else the selected trajectories')."""
    times = ([f[0] for f in facts.lidar_frames] or [tr.stamp_s for tr in series.selected]
             or [float(t) for t in facts.odometry_array()[:, 0]])
    if not times:
        return []
    idx = np.linspace(0, len(times) - 1, min(count, len(times))).round().astype(int)
    return [times[i] for i in sorted(set(idx.tolist()))]
