"""The numbers of a replay report (no ROS): latency and drops per node, processing time from the
nodes' diagnostics, monitor states, fallback share, detections against ground truth, and open-loop
L2 / collision rate of the planned trajectories against the bag's logged ego trajectory and ground
truth (nuScenes convention: at 1, 2 and 3 s).

Definitions (the report repeats them):

* **latency** of a node: wall time from publishing the input that triggers it (the lidar frame, or
  the camera image for the light reader) to receiving that node's output with the same stamp --
  the pipeline up to and including that node. p50/p95/p99 over the frames it answered.
* **dropped**: inputs (frames, images) the node never answered with an output of that stamp.
* **processing time**: the ``processing_time_ms`` each node reports on ``/diagnostics``.
* **monitor state share**: share of ``MonitorStatus`` messages in each state (None without a
  monitor in the graph).
* **fallback share**: share of selected trajectories whose source is the fallback or the
  minimal-risk manoeuvre (docs/METRICS.md "Fallback share").
* **open-loop L2 at h s**: distance between a trajectory's position at ``time_from_start = h`` and
  the logged ego position (odometry) at its stamp + h; mean over the trajectories covering h whose
  stamp + h lies inside the log. **Collision at h s**: the ego footprint at that planned pose
  touches a ground-truth agent's box at stamp + h (share of such trajectories); only with ground
  truth in the bag.
* **detections vs ground truth** (simulator bags): per frame, detections (moved into ``map`` with
  the odometry of the frame's stamp) matched greedily to ground-truth agents within 2 m of centre
  distance, within 40 m of the ego; precision and recall over the frames.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HORIZONS_S = (1.0, 2.0, 3.0)
# PlannedTrajectory.SOURCE_* and MonitorStatus.STATE_* (tps_msgs): names in reports.
SOURCE_NAMES = {0: "planner", 1: "fallback", 2: "minimal_risk", 3: "blend"}
FALLBACK_SOURCES = (1, 2)
STATE_NAMES = {0: "NOMINAL", 1: "DEGRADED", 2: "FALLBACK", 3: "MINIMAL_RISK"}
MATCH_DISTANCE_M = 2.0
MATCH_RANGE_M = 40.0
EGO_SIZE_M = (4.6, 1.9)                  # when the bag has no ground-truth ego box
POSE_MATCH_S = 0.06                      # a logged pose/ground truth within this of a time counts
PROCESSING_ASPECT = ": processing_time"
PROCESSING_KEY = "processing_time_ms"
NS = 1e-9


def percentiles(values, qs=(50, 95, 99)) -> dict | None:
    """{p50, p95, p99, mean, max, n} of the finite values (None when there are none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if not v.size:
        return None
    out = {f"p{q}": round(float(np.percentile(v, q)), 3) for q in qs}
    out.update(mean=round(float(v.mean()), 3), max=round(float(v.max()), 3), n=int(v.size))
    return out


def _yaw(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def _t(stamp) -> float:
    return int(stamp.sec) + int(stamp.nanosec) * NS


@dataclass
class Trajectory:
    """A planned trajectory in plain arrays (map frame)."""

    stamp_s: float
    source: int
    t_s: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray

    @classmethod
    def from_msg(cls, msg) -> Trajectory:
        pts = msg.points
        return cls(_t(msg.header.stamp), int(msg.source),
                   np.array([_t(p.time_from_start) for p in pts], np.float64),
                   np.array([[p.pose.position.x, p.pose.position.y] for p in pts], np.float64).reshape(-1, 2),
                   np.array([_yaw(p.pose.orientation) for p in pts], np.float64),
                   np.array([p.speed_mps for p in pts], np.float64))

    def at(self, h: float) -> tuple[float, float, float] | None:
        """(x, y, yaw) at ``time_from_start = h`` (None outside the trajectory)."""
        if len(self.t_s) < 2 or h < self.t_s[0] - 1e-6 or h > self.t_s[-1] + 1e-6:
            return None
        yaw = np.unwrap(self.yaw)
        return (float(np.interp(h, self.t_s, self.xy[:, 0])), float(np.interp(h, self.t_s, self.xy[:, 1])),
                float(np.interp(h, self.t_s, yaw)))


@dataclass
class GroundTruthFrame:
    """Ground truth of one instant: the ego footprint and agents (x, y, yaw, length, width),
    their classes and ids (map frame)."""

    t_s: float
    ego: np.ndarray
    agents: np.ndarray
    classes: np.ndarray
    ids: np.ndarray


@dataclass
class BagFacts:
    """What the analysis needs from the played input bag, collected while playing (so remaps and
    restamping apply): odometry, ground truth, lane map, route, and outputs of a logged run that
    the bag carries (a closed-loop recording)."""

    inputs: dict
    odometry: list = field(default_factory=list)       # (t, x, y, yaw, speed)
    ground_truth: list = field(default_factory=list)   # GroundTruthFrame
    lane_centerlines: list = field(default_factory=list)
    lane_widths: list = field(default_factory=list)
    route: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    logged: dict = field(default_factory=lambda: defaultdict(list))   # role -> [msg]
    lidar_frames: list = field(default_factory=list)   # (t [s], frame id, (N, 3) points) of some frames
    static_edges: list = field(default_factory=list)   # (parent, child, RigidTransform) of /tf_static
    keep_lidar_every: int = 5
    _lidar_count: int = 0

    def __post_init__(self) -> None:
        self._roles = {v: k for k, v in self.inputs.items()}

    def add(self, m) -> None:
        """One played message (tps_eval.replay.bagio.BagMessage)."""
        role = self._roles.get(m.topic)
        msg = m.msg
        if role == "odometry":
            p, tw = msg.pose.pose, msg.twist.twist.linear
            self.odometry.append((_t(msg.header.stamp), p.position.x, p.position.y, _yaw(p.orientation),
                                  math.hypot(tw.x, tw.y)))
        elif role == "ground_truth":
            def box(a):
                return [a.center.x, a.center.y, a.yaw, a.size.x, a.size.y]
            agents = np.array([box(a) for a in msg.agents], np.float64).reshape(-1, 5)
            self.ground_truth.append(GroundTruthFrame(
                _t(msg.header.stamp), np.array(box(msg.ego), np.float64), agents,
                np.array([a.class_id for a in msg.agents], np.int64),
                np.array([a.id for a in msg.agents], np.int64)))
        elif role == "lane_map":
            self.lane_centerlines = [np.array([[q.x, q.y] for q in ln.centerline], np.float64)
                                     for ln in msg.lanes]
            self.lane_widths = [float(ln.width_m) for ln in msg.lanes]
        elif role == "route":
            self.route = np.array([[ps.pose.position.x, ps.pose.position.y] for ps in msg.poses],
                                  np.float64).reshape(-1, 2)
        elif role == "lidar":
            if self._lidar_count % self.keep_lidar_every == 0:
                self._keep_cloud(m)
            self._lidar_count += 1

    def _keep_cloud(self, m) -> None:
        """Keep a thinned copy of a cloud for the BEV pictures (the conversion reads the rosbags
        message as it reads rclpy's: the same field names)."""
        from tps_inference.conversions import pointcloud2_to_xyzi

        try:
            pts = pointcloud2_to_xyzi(m.msg, intensity_field=None, skip_nonfinite=True)[:, :3]
        except Exception:  # noqa: BLE001 - a picture is optional; the node reports bad clouds
            return
        t = (m.stamp_ns if m.stamp_ns is not None else m.bag_ns) * NS
        self.lidar_frames.append((t, m.msg.header.frame_id, pts[::4].copy()))

    def set_static(self, transforms) -> None:
        """The bag's merged ``/tf_static`` edges (decoded TransformStamped messages)."""
        from tps_common.frames import RigidTransform

        self.static_edges = []
        for tf in transforms:
            t, q = tf.transform.translation, tf.transform.rotation
            try:
                self.static_edges.append((tf.header.frame_id, tf.child_frame_id,
                                          RigidTransform.from_xyz_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))))
            except ValueError:
                continue

    def keep_logged(self, bag, outputs) -> None:
        """Ask ``bag`` for the messages of a logged run on the graph's output topics."""
        roles = {o.topic: o.role for o in outputs}
        bag.keep = {t: (lambda msg, r=r: self.logged[r].append(msg)) for t, r in roles.items()}

    # -- lookups ---------------------------------------------------------------------------------
    def odometry_array(self) -> np.ndarray:
        a = np.array(self.odometry, np.float64).reshape(-1, 5)
        return a[np.argsort(a[:, 0], kind="stable")] if len(a) else a

    def pose_at(self, t: float, odo: np.ndarray | None = None) -> tuple[float, float, float] | None:
        """Logged ego (x, y, yaw) at ``t`` (interpolated; None outside the log)."""
        odo = self.odometry_array() if odo is None else odo
        if not len(odo) or t < odo[0, 0] - POSE_MATCH_S or t > odo[-1, 0] + POSE_MATCH_S:
            return None
        yaw = np.unwrap(odo[:, 3])
        return (float(np.interp(t, odo[:, 0], odo[:, 1])), float(np.interp(t, odo[:, 0], odo[:, 2])),
                float(np.interp(t, odo[:, 0], yaw)))

    def ground_truth_at(self, t: float) -> GroundTruthFrame | None:
        """The ground truth of the instant nearest ``t`` within ``POSE_MATCH_S``."""
        if not self.ground_truth:
            return None
        times = np.array([g.t_s for g in self.ground_truth])
        i = int(np.argmin(np.abs(times - t)))
        return self.ground_truth[i] if abs(times[i] - t) <= POSE_MATCH_S else None


# --- result bag ------------------------------------------------------------------------------------
def read_result(path: Path) -> dict[str, list]:
    """topic -> [(log time [ns], msgtype, decoded message)] of a result bag."""
    from tps_eval.replay.bagio import read_messages

    out: dict[str, list] = defaultdict(list)
    if not Path(path).is_file():
        return out
    for topic, msgtype, t_ns, msg in read_messages(path):
        out[topic].append((t_ns, msgtype, msg))
    return out


def processing_times(diagnostics: list) -> dict[str, list[float]]:
    """node -> processing_time_ms values from recorded DiagnosticArray messages."""
    out: dict[str, list[float]] = defaultdict(list)
    for _, _, msg in diagnostics:
        for st in msg.status:
            if not st.name.endswith(PROCESSING_ASPECT):
                continue
            node = st.name[: -len(PROCESSING_ASPECT)].strip()
            for kv in st.values:
                if kv.key == PROCESSING_KEY:
                    try:
                        out[node].append(float(kv.value))
                    except ValueError:
                        pass
    return out


def open_loop(trajectories: list[Trajectory], facts: BagFacts) -> dict:
    """L2 [m] and collision rate at each horizon (module docstring)."""
    odo = facts.odometry_array()
    out: dict = {}
    for h in HORIZONS_S:
        l2, hits, checked = [], 0, 0
        for tr in trajectories:
            planned = tr.at(h)
            if planned is None:
                continue
            logged = facts.pose_at(tr.stamp_s + h, odo)
            if logged is not None:
                l2.append(math.hypot(planned[0] - logged[0], planned[1] - logged[1]))
            gt = facts.ground_truth_at(tr.stamp_s + h)
            if gt is not None:
                from tps_common.geometry import boxes_overlap

                checked += 1
                ego = [planned[0], planned[1], planned[2], gt.ego[3], gt.ego[4]]
                if len(gt.agents) and bool(boxes_overlap(ego, gt.agents).any()):
                    hits += 1
        key = f"{h:g}s"
        out[key] = {"l2_m": round(float(np.mean(l2)), 3) if l2 else None, "l2_samples": len(l2),
                    "collision_rate": round(hits / checked, 4) if checked else None,
                    "collision_samples": checked}
    l2s = [v["l2_m"] for v in out.values() if v["l2_m"] is not None]
    out["avg_l2_m"] = round(float(np.mean(l2s)), 3) if l2s else None
    return out


def vs_logged(replayed: list[Trajectory], logged: list[Trajectory]) -> dict | None:
    """Mean distance [m] between replayed and logged trajectories of the same stamp at each horizon
    (how far a changed stack moved from the recorded run); None without a logged run."""
    if not logged:
        return None
    by_stamp = {round(t.stamp_s, 3): t for t in logged}
    out: dict = {"matched": 0}
    for h in HORIZONS_S:
        d = []
        for tr in replayed:
            ref = by_stamp.get(round(tr.stamp_s, 3))
            a, b = tr.at(h), ref.at(h) if ref is not None else None
            if a is not None and b is not None:
                d.append(math.hypot(a[0] - b[0], a[1] - b[1]))
        out[f"{h:g}s_m"] = round(float(np.mean(d)), 3) if d else None
    out["matched"] = sum(1 for tr in replayed if round(tr.stamp_s, 3) in by_stamp)
    out["source_changes"] = sum(1 for tr in replayed if round(tr.stamp_s, 3) in by_stamp
                                and by_stamp[round(tr.stamp_s, 3)].source != tr.source)
    return out


def detection_quality(detections: list, facts: BagFacts) -> dict | None:
    """Precision / recall of detections against ground truth (module docstring)."""
    if not facts.ground_truth or not facts.odometry:
        return None
    odo = facts.odometry_array()
    tp = fp = fn = 0
    frames = 0
    for msg in detections:
        t = _t(msg.header.stamp)
        gt, pose = facts.ground_truth_at(t), facts.pose_at(t, odo)
        if gt is None or pose is None:
            continue
        frames += 1
        x0, y0, yaw0 = pose
        c, s = math.cos(yaw0), math.sin(yaw0)
        det = np.array([[x0 + c * a.center.x - s * a.center.y, y0 + s * a.center.x + c * a.center.y]
                        for a in msg.agents], np.float64).reshape(-1, 2)
        det = det[np.hypot(det[:, 0] - x0, det[:, 1] - y0) <= MATCH_RANGE_M]
        agents = gt.agents[:, :2]
        agents = agents[np.hypot(agents[:, 0] - x0, agents[:, 1] - y0) <= MATCH_RANGE_M]
        used = np.zeros(len(agents), bool)
        for d in det:
            if not len(agents):
                fp += 1
                continue
            dist = np.hypot(agents[:, 0] - d[0], agents[:, 1] - d[1])
            dist[used] = np.inf
            j = int(np.argmin(dist))
            if dist[j] <= MATCH_DISTANCE_M:
                used[j] = True
                tp += 1
            else:
                fp += 1
        fn += int((~used).sum())
    if not frames:
        return None
    return {"frames": frames, "true_positives": tp, "false_positives": fp, "missed": fn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "match_distance_m": MATCH_DISTANCE_M, "range_m": MATCH_RANGE_M}


@dataclass
class Series:
    """Time series for the plots (not in the JSON)."""

    odometry: np.ndarray
    selected: list
    fallback: list
    candidate: list
    detections: list
    monitor: list                      # (t, state, certainty)
    latency: dict                      # node -> [(t, ms)]
    markers_topics: list


def analyse(result_path: Path, facts: BagFacts, timing, outputs, absent: list[str], bag_stats,
            undecodable: dict | None = None) -> tuple[dict, Series]:
    """The report dict (JSON-ready) and the plot series of one replay."""
    from tps_eval.replay.player import lookup_key

    res = read_result(result_path)
    by_role: dict[str, list] = defaultdict(list)
    for o in outputs:
        by_role[o.role] += [m for _, _, m in res.get(o.topic, [])]
    frame_keys = [round(stamp_ns / 1e6) for _, _, stamp_ns in timing.frames]
    stamp_of_key = {round(stamp_ns / 1e6): stamp_ns * NS for _, _, stamp_ns in timing.frames}
    latency_ms, dropped, per_output, lat_series = {}, {}, {}, {}
    for o in outputs:
        if o.trigger == "none":
            continue
        published = timing.trigger_published.get(o.trigger, {})
        keys = frame_keys if o.trigger == "lidar" else sorted(published)
        arrivals = timing.arrivals.get(o.topic, {})
        lat, missed, series = [], 0, []
        for k in keys:
            got, sent = lookup_key(arrivals, k), published.get(k)
            if got is None:
                missed += 1
            elif sent is not None:
                lat.append((got - sent) * 1e3)
                series.append((stamp_of_key.get(k, k * 1e-3), (got - sent) * 1e3))
        stats = percentiles(lat)
        per_output[o.topic] = {"node": o.node, "role": o.role, "trigger": o.trigger, "expected": len(keys),
                               "received": len(arrivals), "dropped": missed, "latency_ms": stats,
                               "duplicate_stamps": timing.duplicates.get(o.topic, 0)}
        if o.node not in latency_ms:              # a node's first per-frame output measures it
            latency_ms[o.node] = stats
            dropped[o.node] = missed
            lat_series[o.node] = series
    proc = {n: percentiles(v) for n, v in processing_times(res.get("/diagnostics", [])).items()}
    selected = [Trajectory.from_msg(m) for m in by_role["selected_trajectory"]]
    fallback = [Trajectory.from_msg(m) for m in by_role["fallback_trajectory"]]
    candidate = [Trajectory.from_msg(m) for m in by_role["candidate_trajectory"]]
    sources = Counter(SOURCE_NAMES.get(t.source, str(t.source)) for t in selected)
    fallback_share = (round(sum(1 for t in selected if t.source in FALLBACK_SOURCES) / len(selected), 4)
                      if selected else None)
    monitor_msgs = by_role["monitor_status"]
    monitor = [(_t(m.header.stamp), int(m.state), float(m.certainty)) for m in monitor_msgs]
    if monitor:
        counts = Counter(STATE_NAMES.get(s, str(s)) for _, s, _ in monitor)
        monitor_share = {k: round(v / len(monitor), 4) for k, v in counts.items()}
        monitor_note = f"{len(monitor)} MonitorStatus messages"
    else:
        monitor_share = None
        monitor_note = ("no monitor in the replayed graph (no node of the table has role "
                        "monitor_status): monitor states are not reported")
    detections = by_role["detections"]
    det_counts = [len(m.agents) for m in detections]
    result = {
        "frames": len(timing.frames),
        "latency_ms": latency_ms,
        "dropped": dropped,
        "processing_ms": proc,
        "outputs": per_output,
        "unreadable": sum(bag_stats.unreadable.values()),
        "input": bag_stats.to_dict(),
        "nodes_absent": absent,
        "gave_up_waiting": dict(timing.gave_up),
        "lockstep_timeouts": timing.waits_timed_out,
        "monitor_state_share": monitor_share,
        "monitor": monitor_note,
        "fallback_share": fallback_share,
        "selected_source_share": {k: round(v / len(selected), 4) for k, v in sources.items()} if selected else None,
        "detections": {"messages": len(detections),
                       "per_frame_mean": round(float(np.mean(det_counts)), 3) if det_counts else None,
                       "vs_ground_truth": detection_quality(detections, facts)},
        "open_loop": {"selected": open_loop(selected, facts) if selected else None,
                      "fallback": open_loop(fallback, facts) if fallback else None,
                      "candidate": open_loop(candidate, facts) if candidate else None,
                      "ground_truth": bool(facts.ground_truth), "logged_ego": bool(facts.odometry)},
        "vs_logged_run": vs_logged(selected, [Trajectory.from_msg(m) for m in
                                              facts.logged.get("selected_trajectory", [])]),
        "recorded": {t: len(v) for t, v in res.items()},
        "undecodable": dict(undecodable or {}),
    }
    series = Series(facts.odometry_array(), selected, fallback, candidate, detections, monitor, lat_series,
                    [t for t, v in res.items() if v and v[0][1] == "visualization_msgs/msg/MarkerArray"])
    return result, series
