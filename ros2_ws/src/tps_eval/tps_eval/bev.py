"""Bird's-eye-view plots of the simulated world (matplotlib, Agg backend; no rclpy).

Draws, in the ``map`` frame (x east, y north, metres): the drivable area (lane and junction
polygons), lane markings, dynamic agents as oriented boxes coloured by class with their ids,
static objects (clutter, debris), the route, the ego's path so far, the ego box, optional lidar
points and collision markers. :func:`render_frame_png` writes one PNG; :func:`render_episode_gif`
writes one GIF per episode (Pillow), drawing the road once and only the moving parts per frame.

Boxes are :class:`tps_eval.metrics.ObjectFrame` (ids, xy, yaw, length, width, velocity,
class_id); :func:`frame_from_boxset` converts a :class:`tps_sim.sensors.scene3d.BoxSet`.
Traffic lights: each stop line is drawn across its lane and each head as a dot (linked to its
stop line by a thin line), both in the colour of the light's state at the frame
(``LIGHT_COLOURS``). The stack's state, when known, is drawn on top: its detections as dashed
outlines (``DETECTION_COLOUR``; ground-truth agents stay filled) and a text box (``BevFrame.info``:
the selected trajectory's source, the monitor state, the detector's status). With the monitor's
state per step (``BevFrame.path_state``) the ego's path is coloured by it (``MONITOR_COLOURS``,
legend in the lower right). :func:`render_monitor_timeline_png` plots an episode's speed and
monitor certainty over time with the monitor state as a coloured band and its transitions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from tps_common.geometry import box_corners  # noqa: E402

from tps_eval.metrics import ObjectFrame  # noqa: E402

# Colours per class: DetectedAgent.CLASS_* for agents (0..5), scene3d MAT_* for statics (10..15).
CLASS_COLOURS = {
    0: "#7f7f7f",   # unknown
    1: "#1f77b4",   # car
    2: "#8c564b",   # truck
    3: "#ff7f0e",   # bus
    4: "#d62728",   # pedestrian
    5: "#9467bd",   # cyclist
    10: "#555555",  # pole
    11: "#bcbd22",  # barrier
    12: "#444444",  # wall
    13: "#999999",  # building
    14: "#17becf",  # parked car
    15: "#e377c2",  # debris
}
CLASS_NAMES = {0: "unknown", 1: "car", 2: "truck", 3: "bus", 4: "pedestrian", 5: "cyclist",
               10: "pole", 11: "barrier", 12: "wall", 13: "building", 14: "parked car",
               15: "debris"}
EGO_COLOUR = "#2ca02c"
ROAD_COLOUR = "#d9d9d9"
MARKING_COLOUR = "#ffffff"
ROUTE_COLOUR = "#2ca02c"
PATH_COLOUR = "#000000"
COLLISION_COLOUR = "#ff0000"
BACKGROUND_COLOUR = "#a8c99a"
DETECTION_COLOUR = "#d62728"

# Traffic-light states (tps_common.traffic_lights: RED 0, YELLOW 1, GREEN 2, OFF 3, UNKNOWN 4).
LIGHT_COLOURS = {0: "#e41a1c", 1: "#ffbf00", 2: "#00c853", 3: "#7f7f7f", 4: "#7f7f7f"}
STOP_LINE_WIDTH_PT = 3.0

# Monitor states (tps_eval.metrics.MONITOR_STATES): path colours and timeline bands.
MONITOR_COLOURS = {"NOMINAL": "#2ca02c", "DEGRADED": "#ffbf00", "FALLBACK": "#ff7f0e",
                   "MINIMAL_RISK": "#d62728"}
MONITOR_UNKNOWN_COLOUR = "#7f7f7f"

DEFAULT_VIEW_RADIUS_M = 45.0
DEFAULT_FIGSIZE_IN = (6.0, 6.0)
DEFAULT_DPI = 80
MAX_LIDAR_POINTS = 20000   # thinned above this, to keep a frame cheap
TIMELINE_MAX_LISTED = 24   # monitor transitions listed under a timeline plot


@dataclass(frozen=True, eq=False)
class BevScene:
    """What does not move during an episode.

    Attributes:
        drivable_polygons: (M_i, 2) polygons [m] of the drivable area.
        marking_polylines: (K_i, 2) polylines [m] of lane markings.
        route: (R, 2) route polyline [m].
        statics: static objects (clutter, debris).
        ego_length_m, ego_width_m: ego footprint [m].
        title: text drawn above every frame.
        light_stop_lines: (L, 2, 2) stop-line end points [m] of the traffic lights.
        light_heads_xy: (L, 2) head positions [m] (same order).
    """

    drivable_polygons: Sequence[np.ndarray] = ()
    marking_polylines: Sequence[np.ndarray] = ()
    route: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    statics: ObjectFrame = field(default_factory=ObjectFrame.empty)
    ego_length_m: float = 4.6
    ego_width_m: float = 1.9
    title: str = ""
    light_stop_lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2)))
    light_heads_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


@dataclass(frozen=True, eq=False)
class BevFrame:
    """What moves: one step.

    Attributes:
        ego_pose: (x [m], y [m], yaw [rad]) of base_link.
        agents: dynamic agents at this step.
        path: (P, 2) ego positions so far [m].
        lidar_xy: optional (N, 2) lidar points in map [m].
        collision_xy: (C, 2) positions [m] to mark as collisions (all so far).
        time_s: simulation time [s] (shown in the title).
        label: extra text (e.g. the selected trajectory source).
        light_states: (L,) state of each traffic light of the scene (None: drawn grey).
        detections: the stack's detections at this step, in map (None: not known, not drawn).
        info: lines of text drawn in a box in the upper left corner (the stack's state).
        path_state: the monitor state name at each point of ``path`` (None: no monitor; the
            path is drawn black).
    """

    ego_pose: tuple[float, float, float]
    agents: ObjectFrame = field(default_factory=ObjectFrame.empty)
    path: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    lidar_xy: np.ndarray | None = None
    collision_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    time_s: float = 0.0
    label: str = ""
    light_states: np.ndarray | None = None
    detections: ObjectFrame | None = None
    info: tuple[str, ...] = ()
    path_state: Sequence[str] | None = None


def monitor_colour(state: str) -> str:
    """The colour of a monitor state name (grey when unknown)."""
    return MONITOR_COLOURS.get(str(state), MONITOR_UNKNOWN_COLOUR)


def frame_from_boxset(boxes) -> ObjectFrame:
    """An :class:`ObjectFrame` from a ``scene3d.BoxSet`` (materials become class ids)."""
    n = len(boxes)
    return ObjectFrame(boxes.ids, boxes.centers[:, :2], boxes.yaws, boxes.sizes[:, 0],
                       boxes.sizes[:, 1], np.zeros((n, 2)), boxes.materials.astype(np.int64))


class BevRenderer:
    """A figure with the static scene drawn once; :meth:`draw` adds one frame's moving parts.

    Args:
        scene: the static part.
        view_radius_m: half side of the square view around the ego [m] (None: whole scene).
        figsize_in, dpi: figure size [inch] and resolution.
        show_ids: write each agent's id next to its box.
    """

    def __init__(self, scene: BevScene, view_radius_m: float | None = DEFAULT_VIEW_RADIUS_M,
                 figsize_in: tuple[float, float] = DEFAULT_FIGSIZE_IN, dpi: int = DEFAULT_DPI,
                 show_ids: bool = True) -> None:
        self.scene = scene
        self.view_radius_m = view_radius_m
        self.show_ids = show_ids
        self.fig, self.ax = plt.subplots(figsize=figsize_in, dpi=dpi)
        self.ax.set_facecolor(BACKGROUND_COLOUR)
        self.ax.set_aspect("equal")
        self.ax.set_xlabel("x [m] (map, east)")
        self.ax.set_ylabel("y [m] (map, north)")
        polys = [np.asarray(p, float) for p in scene.drivable_polygons if len(p) >= 3]
        if polys:
            self.ax.add_collection(PolyCollection(polys, facecolors=ROAD_COLOUR,
                                                  edgecolors="none", zorder=1))
        lines = [np.asarray(p, float) for p in scene.marking_polylines if len(p) >= 2]
        if lines:
            self.ax.add_collection(LineCollection(lines, colors=MARKING_COLOUR, linewidths=0.8,
                                                  zorder=2))
        if len(scene.route) >= 2:
            self.ax.plot(scene.route[:, 0], scene.route[:, 1], "--", color=ROUTE_COLOUR,
                         lw=1.5, alpha=0.8, zorder=3, label="route")
        if len(scene.statics):
            self._boxes(scene.statics, zorder=4, alpha=0.9)
        self._dynamic: list = []
        self._extent = self._scene_extent()

    def _scene_extent(self) -> tuple[float, float, float, float]:
        pts = [np.asarray(p, float).reshape(-1, 2) for p in self.scene.drivable_polygons]
        pts += [np.asarray(self.scene.route, float).reshape(-1, 2)]
        pts = [p for p in pts if len(p)]
        if not pts:
            return (-50.0, 50.0, -50.0, 50.0)
        allp = np.concatenate(pts)
        lo, hi = allp.min(axis=0) - 5.0, allp.max(axis=0) + 5.0
        return (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))

    def _boxes(self, frame: ObjectFrame, zorder: int, alpha: float = 1.0) -> list:
        corners = frame.corners()
        colours = [CLASS_COLOURS.get(int(c), CLASS_COLOURS[0]) for c in frame.class_id]
        coll = PolyCollection(list(corners), facecolors=colours, edgecolors="black",
                              linewidths=0.5, alpha=alpha, zorder=zorder)
        self.ax.add_collection(coll)
        artists = [coll]
        # a short stroke at the front edge shows the heading
        fronts = corners[:, :2, :]
        heading = LineCollection(list(fronts), colors="black", linewidths=1.5, zorder=zorder)
        self.ax.add_collection(heading)
        artists.append(heading)
        return artists

    def draw(self, frame: BevFrame) -> None:
        """Replace the moving parts with those of ``frame``."""
        for a in self._dynamic:
            a.remove()
        dyn: list = []
        ax = self.ax
        dyn += self._lights(frame)
        if frame.lidar_xy is not None and len(frame.lidar_xy):
            pts = np.asarray(frame.lidar_xy, float).reshape(-1, 2)
            if pts.shape[0] > MAX_LIDAR_POINTS:
                pts = pts[:: int(np.ceil(pts.shape[0] / MAX_LIDAR_POINTS))]
            dyn.append(ax.scatter(pts[:, 0], pts[:, 1], s=0.3, c="#303030", alpha=0.5,
                                  zorder=5, linewidths=0))
        if len(frame.agents):
            dyn += self._boxes(frame.agents, zorder=6)
            if self.show_ids:
                for oid, (x, y) in zip(frame.agents.ids, frame.agents.xy, strict=True):
                    if self._visible(frame, x, y):
                        dyn.append(ax.text(x, y + 1.6, str(int(oid)), fontsize=6,
                                           ha="center", zorder=9))
        if frame.detections is not None and len(frame.detections):
            det = PolyCollection(list(frame.detections.corners()), facecolors="none",
                                 edgecolors=DETECTION_COLOUR, linewidths=1.2, linestyles="--",
                                 zorder=8.5)
            ax.add_collection(det)
            dyn.append(det)
        if frame.info:
            dyn.append(ax.text(0.02, 0.98, "\n".join(frame.info), transform=ax.transAxes,
                               fontsize=7, va="top", ha="left", family="monospace", zorder=11,
                               bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85}))
        path = np.asarray(frame.path, float).reshape(-1, 2)
        if frame.path_state is not None and len(frame.path_state) == len(path):
            dyn += self._state_path(path, frame.path_state)
        elif len(path) >= 2:
            dyn += ax.plot(path[:, 0], path[:, 1], "-", color=PATH_COLOUR, lw=1.2, zorder=7)
        x, y, yaw = frame.ego_pose
        ego = box_corners([[x, y]], [yaw], [self.scene.ego_length_m], [self.scene.ego_width_m])[0]
        ego_coll = PolyCollection([ego], facecolors=EGO_COLOUR, edgecolors="black",
                                  linewidths=1.0, zorder=8)
        ax.add_collection(ego_coll)
        dyn.append(ego_coll)
        dyn += ax.plot(ego[:2, 0], ego[:2, 1], "-", color="black", lw=2.0, zorder=8)
        col = np.asarray(frame.collision_xy, float).reshape(-1, 2)
        if len(col):
            dyn.append(ax.scatter(col[:, 0], col[:, 1], s=160, marker="X", c=COLLISION_COLOUR,
                                  edgecolors="black", zorder=10))
        title = f"{self.scene.title}  t = {frame.time_s:.1f} s"
        if frame.label:
            title += f"  {frame.label}"
        dyn.append(ax.set_title(title, fontsize=8))
        if self.view_radius_m is None:
            x0, x1, y0, y1 = self._extent
        else:
            r = self.view_radius_m
            x0, x1, y0, y1 = x - r, x + r, y - r, y + r
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        # the title is owned by the axes; keep it out of the removal list
        self._dynamic = [a for a in dyn if a is not ax.title]

    def _state_path(self, path: np.ndarray, states: Sequence[str]) -> list:
        """The ego's path, each segment in the colour of the monitor state at its end, and a
        legend of the states."""
        from matplotlib.lines import Line2D

        out = []
        if len(path) >= 2:
            segs = np.stack([path[:-1], path[1:]], axis=1)
            colours = [monitor_colour(st) for st in list(states)[1:]]
            out.append(LineCollection(list(segs), colors=colours, linewidths=2.5, zorder=7))
            self.ax.add_collection(out[0])
        handles = [Line2D([], [], color=c, lw=2.5, label=name) for name, c in MONITOR_COLOURS.items()]
        leg = self.ax.legend(handles=handles, loc="lower right", fontsize=6, title="monitor",
                             title_fontsize=6, framealpha=0.85)
        leg.set_zorder(11)
        return out + [leg]

    def _lights(self, frame: BevFrame) -> list:
        """Stop lines and heads in their state colours (module docstring)."""
        lines = np.asarray(self.scene.light_stop_lines, float).reshape(-1, 2, 2)
        if not len(lines):
            return []
        states = (np.full(len(lines), 4) if frame.light_states is None
                  else np.asarray(frame.light_states).reshape(-1))
        colours = [LIGHT_COLOURS.get(int(v), LIGHT_COLOURS[4]) for v in states]
        heads = np.asarray(self.scene.light_heads_xy, float).reshape(-1, 2)
        out = [self.ax.add_collection(LineCollection(list(lines), colors=colours,
                                                     linewidths=STOP_LINE_WIDTH_PT, zorder=3.5))]
        if len(heads) == len(lines):
            links = [np.stack([ln.mean(axis=0), h]) for ln, h in zip(lines, heads, strict=True)]
            out.append(self.ax.add_collection(LineCollection(links, colors=colours, linewidths=0.4,
                                                             linestyles=":", zorder=3.5)))
            out.append(self.ax.scatter(heads[:, 0], heads[:, 1], s=28, c=colours,
                                       edgecolors="black", linewidths=0.5, zorder=9))
        return out

    def _visible(self, frame: BevFrame, x: float, y: float) -> bool:
        if self.view_radius_m is None:
            return True
        ex, ey, _ = frame.ego_pose
        return abs(x - ex) <= self.view_radius_m and abs(y - ey) <= self.view_radius_m

    def to_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 image of the current figure."""
        self.fig.canvas.draw()
        buf = np.asarray(self.fig.canvas.buffer_rgba())
        return buf[:, :, :3].copy()

    def save_png(self, path: str | os.PathLike) -> Path:
        """Write the current figure as PNG; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(path)
        return path

    def close(self) -> None:
        """Release the figure."""
        plt.close(self.fig)


def render_frame_png(scene: BevScene, frame: BevFrame, path: str | os.PathLike,
                     view_radius_m: float | None = DEFAULT_VIEW_RADIUS_M) -> Path:
    """One BEV frame as a PNG at ``path``; returns the path."""
    r = BevRenderer(scene, view_radius_m=view_radius_m)
    try:
        r.draw(frame)
        return r.save_png(path)
    finally:
        r.close()


def render_episode_gif(scene: BevScene, frames: Sequence[BevFrame], path: str | os.PathLike,
                       fps: float = 10.0, view_radius_m: float | None = DEFAULT_VIEW_RADIUS_M,
                       progress: bool = False) -> Path:
    """An animated GIF (Pillow) of ``frames`` at ``fps`` frames per second; returns the path.

    Raises:
        ValueError: when ``frames`` is empty or ``fps`` is not positive.
    """
    from PIL import Image

    if not frames:
        raise ValueError("render_episode_gif: no frames to draw")
    if not fps > 0:
        raise ValueError(f"render_episode_gif: fps must be > 0, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    r = BevRenderer(scene, view_radius_m=view_radius_m)
    images = []
    try:
        it = frames
        if progress:
            from tqdm import tqdm
            it = tqdm(frames, desc=f"BEV {path.name}", unit="frame", leave=False)
        for f in it:
            r.draw(f)
            images.append(Image.fromarray(r.to_rgb()).quantize(colors=64, method=Image.MEDIANCUT))
    finally:
        r.close()
    duration_ms = int(round(1000.0 / fps))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0,
                   optimize=False)
    return path


def monitor_transition_lines(monitor: dict, max_reason_chars: int = 90) -> list[str]:
    """One line per monitor transition, numbered as :func:`render_monitor_timeline_png` marks
    them: ``"k  t.t s  FROM->TO: reasons"`` (reasons shortened to ``max_reason_chars``)."""
    lines = []
    for k, tr in enumerate((monitor or {}).get("transitions") or [], start=1):
        text = f"{k:>2}  {float(tr['t_s']):5.1f} s  {tr['from']}->{tr['to']}"
        reasons = ", ".join(str(r) for r in tr.get("reasons") or [])
        if reasons:
            text += ": " + (reasons if len(reasons) <= max_reason_chars
                            else reasons[: max_reason_chars - 3] + "...")
        lines.append(text)
    return lines


def render_monitor_timeline_png(t_s: np.ndarray, speed_mps: np.ndarray, monitor: dict,
                                path: str | os.PathLike, title: str = "",
                                max_reason_chars: int = 90, max_listed: int = TIMELINE_MAX_LISTED) -> Path:
    """An episode's timeline as a PNG: the ego's speed [m/s] (top) and the monitor's certainty
    (middle) over time [s], both over a band coloured by the monitor state (``MONITOR_COLOURS``),
    each transition a vertical line numbered at the top; the numbered transitions are listed
    below the plots ("k  t s  FROM->TO: reasons", :func:`monitor_transition_lines`; the first
    ``max_listed``, then how many more: the report's monitor table has them all).

    Args:
        t_s, speed_mps: (T,) step times [s] and speeds [m/s] (the episode log).
        monitor: an episode's ``metrics["monitor"]`` (tps_eval.metrics.monitor_summary).
        path: where to write the PNG.
        title: text above the plot.
        max_reason_chars: a transition's reasons are shortened to this many characters.
        max_listed: at most this many transitions are listed below the plots.

    Raises:
        ValueError: when ``monitor`` has no timeline.
    """
    from matplotlib.patches import Patch

    timeline = list((monitor or {}).get("timeline") or [])
    if not timeline:
        raise ValueError("render_monitor_timeline_png: the monitor timeline is empty")
    t_s = np.asarray(t_s, float).reshape(-1)
    speed = np.asarray(speed_mps, float).reshape(-1)
    mt = np.array([row[0] for row in timeline], float)
    states = [str(row[1]) for row in timeline]
    cert = np.array([row[2] for row in timeline], float)
    t_end = float(max(t_s[-1] if t_s.size else mt[-1], mt[-1]))
    dt = float(np.median(np.diff(mt))) if mt.size > 1 else 0.1
    transitions = list(monitor.get("transitions") or [])
    lines = monitor_transition_lines(monitor, max_reason_chars)
    if len(lines) > max_listed:
        lines = lines[:max_listed] + [f"    ... {len(lines) - max_listed} more transitions (the report's monitor table)"]
    list_h = 0.115 * len(lines) + 0.35 if lines else 0.0     # [in]: the text lines and the x label
    fig = plt.figure(figsize=(9.0, 4.6 + list_h), dpi=DEFAULT_DPI)
    grid = fig.add_gridspec(3, 1, height_ratios=[2.0, 2.0, max(list_h, 0.01)], hspace=0.06)
    ax_v = fig.add_subplot(grid[0])
    ax_c = fig.add_subplot(grid[1], sharex=ax_v)
    ax_t = fig.add_subplot(grid[2])
    ax_t.axis("off")
    try:
        # state band: each status holds until the next one (the last for one cycle)
        ends = np.append(mt[1:], min(mt[-1] + dt, t_end + dt))
        for ax in (ax_v, ax_c):
            for t0, t1, st in zip(mt, ends, states, strict=True):
                ax.axvspan(t0, t1, color=monitor_colour(st), alpha=0.25, lw=0)
        ax_v.plot(t_s, speed, "-", color="black", lw=1.2)
        ax_v.set_ylabel("speed [m/s]")
        ax_v.tick_params(labelbottom=False)
        ax_c.plot(mt, cert, ".-", color="#1f77b4", lw=1.0, ms=3)
        ax_c.set_ylim(-0.02, 1.02)
        ax_c.set_ylabel("certainty")
        ax_c.set_xlabel("t [s]")
        for k, tr in enumerate(transitions, start=1):
            for ax in (ax_v, ax_c):
                ax.axvline(float(tr["t_s"]), color=monitor_colour(tr["to"]), lw=1.2, ls="--")
            # numbers on two staggered rows, so neighbouring transitions stay readable
            ax_v.annotate(str(k), (float(tr["t_s"]), 1.0), xycoords=("data", "axes fraction"),
                          xytext=(1, -2 - 8 * ((k - 1) % 2)), textcoords="offset points", fontsize=6,
                          va="top", ha="left", fontweight="bold",
                          bbox={"boxstyle": "square,pad=0.1", "fc": monitor_colour(tr["to"]), "alpha": 0.6, "lw": 0})
        if lines:
            ax_t.text(0.0, 1.0 - 0.3 / list_h, "\n".join(lines), transform=ax_t.transAxes, fontsize=6.5,
                      family="monospace", va="top", ha="left", linespacing=1.25)
        handles = [Patch(color=c, alpha=0.5, label=n) for n, c in MONITOR_COLOURS.items()]
        ax_c.legend(handles=handles, loc="lower left", fontsize=6, ncol=4, framealpha=0.85)
        ax_v.set_xlim(min(0.0, float(mt[0])), t_end)
        if title:
            ax_v.set_title(title, fontsize=8)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.95 if title else 0.98, bottom=0.03)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path
    finally:
        plt.close(fig)
