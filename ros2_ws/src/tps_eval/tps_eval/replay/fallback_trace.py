"""Trace the fallback planner offline through a recorded episode: its core
(:class:`tps_planner.fallback.FallbackPlanner`) fed the bag's lidar clouds, odometry, route, lane
map, monitor states and light readings frame by frame, with no DDS and no graph, printing what it
decided and the tracked objects it decided on, beside what the fallback node said in the run (its
``/diagnostics``, where the bag has them).

    python -m tps_eval.replay.fallback_trace runs/eval/stalled/episodes/stalled-s1002-stack/episode.mcap \
        --from 7 --to 12
    python -m tps_eval.replay.fallback_trace BAG --set lane_changes=false --json trace.json

What it is for: a fallback decision seen in a closed-loop report ("overtake stalled object 64" just
before a contact) is replayed here in seconds, with every object's arc-length and lateral extent,
speed and standing time, and a parameter can be changed (``--set``) to see what the fallback would
have done instead. The trace follows the run as long as its inputs are in the bag: a closed-loop
``--record`` bag has them all (route, lane map, clouds, odometry, ``/tps/monitor/status``,
``/tps/perception/traffic_lights``, ``/map``'s light info). Where the replayed decision differs
from the recorded one, ``agreement`` says so (the node plans a frame's cloud with the monitor
state it last heard; the trace takes the newest status stamped before the cloud, which is the
same in the synchronous closed loop).

Parameters: ``config/fallback_node.param.yaml`` (``--params``), with ``use_traffic_lights`` on
where the bag has light readings (as the stack graph sets it), then ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LIDAR = "/carla/ego_vehicle/lidar"
ODOMETRY = "/carla/ego_vehicle/odometry"
ROUTE = "/planning/route"
LANE_MAP = "/tps/map/lane_map"
MONITOR = "/tps/monitor/status"
LIGHTS = "/tps/perception/traffic_lights"
LIGHT_INFO = "/carla/traffic_lights/info"
DIAGNOSTICS = "/diagnostics"
TF_STATIC = "/tf_static"
FALLBACK_STATUS = "fallback: planning"     # the fallback node's planning status (its node name "fallback")
STAMP_KEY_DIGITS = 3                       # clouds and odometry share stamps to the millisecond
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class TracedObject:
    """One of the fallback's route objects around the ego (arc lengths relative to the front bumper)."""

    track_id: int
    ahead_m: float                 # near face - front bumper, along the route [m]
    length_m: float                # along the route [m]
    d_min_m: float                 # lateral extent, left positive [m]
    d_max_m: float
    speed_mps: float | None        # None: not known yet
    stationary_s: float


@dataclass
class FrameTrace:
    """The fallback core's decision on one lidar frame, and the node's in the run (``recorded``)."""

    stamp_s: float
    speed_mps: float
    s_ego_m: float
    monitor_state: int | None
    lane_state: str
    lane_reason: str
    obstacle_gap_m: float          # inf: nothing in the corridor
    plan_speed_end_mps: float      # nan: no trajectory
    stops: list[str]
    messages: list[str]
    objects: list[TracedObject] = field(default_factory=list)
    recorded: dict | None = None   # lane_state, lane_reason, nearest_obstacle_m of the run


@dataclass
class TraceResult:
    frames: list[FrameTrace]
    lights: bool                   # light readings replayed
    monitor: bool                  # monitor states replayed
    map_messages: list[str]
    compared: int = 0              # frames with a recorded decision
    agree: int = 0                 # of those, same lane state and reason, obstacle gap within 0.05 m
    first_disagreement_s: float | None = None


def load_params(path: Path, overrides: dict, lights: bool):
    """(FallbackParams, the node's full parameter dict) from a node parameter file (``/**:
    ros__parameters``), ``use_traffic_lights`` = ``lights``, then ``overrides``, validated against
    the node's schema as the node validates them. ValueError (``ParameterError``) names an unknown
    key or a bad value; the core's own cross-parameter checks raise ValueError too."""
    from tps_common.params import load_schema, validate
    from tps_planner.fallback import FallbackParams

    doc = yaml.safe_load(path.read_text()) or {}
    values = dict((doc.get("/**") or {}).get("ros__parameters") or {})
    values["use_traffic_lights"] = lights
    values.update(overrides)
    values = validate(values, load_schema("fallback_node"))
    names = {f.name for f in dataclasses.fields(FallbackParams)}
    return FallbackParams(**{k: v for k, v in values.items() if k in names}), values


def parse_set(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> dict; the value is read as YAML (``true``, ``12.5``, ``[0, 1]``)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(text)
    return out


def _diag_values(msg) -> dict | None:
    for st in msg.status:
        if st.name == FALLBACK_STATUS:
            return {kv.key: kv.value for kv in st.values}
    return None


def _lidar_extrinsic(static_msgs, base_frame: str, lidar_frame: str, configured):
    """T_base<-lidar from the bag's /tf_static where it connects the frames, else ``configured``."""
    from tps_common.frames import FrameLookupError, TransformBuffer
    from tps_common.tf import transform_from_msg

    buf = TransformBuffer()
    for msg in static_msgs:
        for tf in msg.transforms:
            try:
                buf.set_transform(tf.header.frame_id, tf.child_frame_id, transform_from_msg(tf.transform), static=True)
            except ValueError:
                continue
    try:
        return buf.lookup_chain(base_frame, lidar_frame).transform
    except FrameLookupError:
        return configured


def trace_bag(bag: Path, *, params_file: Path, overrides: dict | None = None, t_from: float = -math.inf,
              t_to: float = math.inf, behind_m: float = 5.0, ahead_m: float = 40.0,
              lights: bool | None = None) -> TraceResult:
    """Replay ``bag`` through the fallback core (module docstring). ``lights`` None: on where the
    bag has light readings and the lights' map info. Frames outside [t_from, t_to] are planned but
    not returned; objects from ``behind_m`` behind the front bumper to ``ahead_m`` ahead are listed.

    Raises:
        ValueError: the bag has no lidar or odometry, or no route, or a bad parameter.
    """
    from tps_common.conversions import light_heads_from_info, time_to_seconds
    from tps_common.frames import parse_static_transform
    from tps_planner import conversions as conv
    from tps_planner.fallback import FallbackPlanner, VirtualStop
    from tps_planner.route_maps import RouteMapWorker
    from tps_planner.traffic_rules import TrafficLightStage, TrafficRuleParams

    from tps_eval.replay.bagio import open_reader

    want = {LIDAR, ODOMETRY, ROUTE, LANE_MAP, MONITOR, LIGHTS, LIGHT_INFO, DIAGNOSTICS, TF_STATIC}
    by_topic: dict[str, list] = {t: [] for t in want}
    with open_reader(bag) as rd:
        conns = [c for c in rd.connections if c.topic in want]
        for c, _ts, raw in rd.messages(connections=conns):
            by_topic[c.topic].append(raw if c.topic == ROUTE else rd.deserialize(raw, c.msgtype))
    missing = [t for t in (LIDAR, ODOMETRY, ROUTE) if not by_topic[t]]
    if missing:
        raise ValueError(f"{bag}: no message on {missing}: nothing to trace")
    if lights is None:
        lights = bool(by_topic[LIGHTS]) and bool(by_topic[LIGHT_INFO])
    params, cfg = load_params(params_file, overrides or {}, lights)
    core = FallbackPlanner(params)
    configured = parse_static_transform("lidar_extrinsic", cfg["lidar_extrinsic"])
    core.set_lidar_extrinsic(_lidar_extrinsic(by_topic[TF_STATIC], cfg["base_frame"],
                                              cfg["lidar_frame"] or "lidar", configured))
    stage = None
    if lights:
        stage = TrafficLightStage(TrafficRuleParams.from_node_config(cfg))
        stage.set_heads(light_heads_from_info(by_topic[LIGHT_INFO][-1]))
        for msg in by_topic[LIGHTS]:
            stamp, obs = conv.light_observations(msg)
            stage.put(stamp, obs)
    # The route and lane map are latched and come first in a recording; build them as the node does.
    worker = RouteMapWorker(params)
    map_messages: list[str] = []
    try:
        worker.put_route(by_topic[ROUTE][-1])
        if by_topic[LANE_MAP]:
            worker.put_lane_map(by_topic[LANE_MAP][-1])
        worker.wait_idle(30.0)
        for u in worker.take():
            if u.built is not None:
                core.install_route_map(u.built, new_route=u.new_route)
                if u.new_route and stage is not None and u.route_xy is not None:
                    stage.set_route(u.route_xy)
            map_messages += [f"{aspect}: {text}" for aspect, text in u.errors] + list(u.infos)
    finally:
        worker.close()
    poses = {}
    for msg in by_topic[ODOMETRY]:
        pose = conv.odometry_to_pose(msg)
        poses[round(pose.stamp_s, STAMP_KEY_DIGITS)] = pose
    monitors = sorted((time_to_seconds(m.header.stamp), conv.monitor_state_of(m)[0]) for m in by_topic[MONITOR])
    recorded = {}
    for msg in by_topic[DIAGNOSTICS]:
        vals = _diag_values(msg)
        if vals is not None:
            recorded[round(time_to_seconds(msg.header.stamp), STAMP_KEY_DIGITS)] = vals
    res_out = TraceResult([], lights=stage is not None, monitor=bool(monitors), map_messages=map_messages)
    i_mon, state, last_stamp = 0, None, -math.inf
    for msg in by_topic[LIDAR]:
        stamp = time_to_seconds(msg.header.stamp)
        pose = poses.get(round(stamp, STAMP_KEY_DIGITS))
        # a frame without its odometry is not planned, nor one not newer than the last (the bridge
        # repeats its first frame while the controller starts; tps-replay drops it as out of order)
        if pose is None or stamp <= last_stamp:
            continue
        last_stamp = stamp
        while i_mon < len(monitors) and monitors[i_mon][0] < stamp - 1e-6:
            state = monitors[i_mon][1]
            i_mon += 1
        try:
            points = conv.pointcloud_to_xyz(msg)
        except conv.ConversionError:
            points = None
        stops = ()
        if stage is not None and core.route is not None:
            s_ego, _ = core.project_ego(pose)
            stops = stage.update(stamp, s_ego + params.ego_length_m / 2, pose.speed_mps).stops
        res = core.update(points, stamp, pose, state, virtual_stops=tuple(VirtualStop(s, "traffic light") for s in stops))
        if not t_from <= stamp <= t_to:
            continue
        front = res.s_ego_m + params.ego_length_m / 2
        objects = [TracedObject(int(o.track_id), round(o.s_min_m - front, 2), round(o.s_max_m - o.s_min_m, 2),
                                round(o.d_min_m, 2), round(o.d_max_m, 2),
                                round(o.speed_mps, 2) if o.velocity_known else None, round(o.stationary_s, 1))
                   for o in res.objects if o.s_max_m > front - behind_m and o.s_min_m < front + ahead_m]
        objects.sort(key=lambda o: o.ahead_m)
        rec = recorded.get(round(stamp, STAMP_KEY_DIGITS))
        frame = FrameTrace(
            stamp_s=round(stamp, 3), speed_mps=round(pose.speed_mps, 2), s_ego_m=round(res.s_ego_m, 2),
            monitor_state=state, lane_state=res.lane.state, lane_reason=res.lane.reason,
            obstacle_gap_m=round(res.obstacle.gap_m, 2) if res.obstacle is not None else math.inf,
            plan_speed_end_mps=round(float(res.trajectory.speed_mps[-1]), 2) if res.trajectory is not None else math.nan,
            stops=[f"{st.reason} at {st.s_m:.1f} m" for st in res.stops], messages=list(res.messages),
            objects=objects,
            recorded=None if rec is None else {k: rec.get(k) for k in ("lane_state", "lane_reason", "nearest_obstacle_m")})
        if rec is not None:
            res_out.compared += 1
            if _agrees(frame, rec):
                res_out.agree += 1
            elif res_out.first_disagreement_s is None:
                res_out.first_disagreement_s = frame.stamp_s
        res_out.frames.append(frame)
    return res_out


def _agrees(frame: FrameTrace, rec: dict) -> bool:
    try:
        gap = float(rec.get("nearest_obstacle_m", "nan"))
    except ValueError:
        return False
    same_gap = (math.isinf(gap) and math.isinf(frame.obstacle_gap_m)) or abs(gap - frame.obstacle_gap_m) <= 0.05
    return rec.get("lane_state") == frame.lane_state and rec.get("lane_reason") == frame.lane_reason and same_gap


def format_trace(result: TraceResult) -> str:
    """The trace as text: one line per frame (a '!' where the run decided otherwise), its objects below."""
    lines = [f"lights {'replayed' if result.lights else 'not replayed'}, monitor states "
             f"{'replayed' if result.monitor else 'not in the bag'}"]
    lines += [f"map: {m}" for m in result.map_messages]
    for f in result.frames:
        flag = " " if f.recorded is None or _agrees(f, f.recorded) else "!"
        gap = "-" if math.isinf(f.obstacle_gap_m) else f"{f.obstacle_gap_m:.2f}"
        lines.append(f"{flag}{f.stamp_s:7.2f} s  v {f.speed_mps:5.2f}  monitor {f.monitor_state}  "
                     f"{f.lane_state}: {f.lane_reason}  obstacle {gap} m  plan end {f.plan_speed_end_mps} m/s"
                     + (f"  stops [{'; '.join(f.stops)}]" if f.stops else ""))
        if flag == "!":
            lines.append(f"          run: {f.recorded}")
        for o in f.objects:
            v = "?" if o.speed_mps is None else f"{o.speed_mps:.2f}"
            lines.append(f"          track {o.track_id:4d}  ahead {o.ahead_m:7.2f} m  length {o.length_m:5.2f}  "
                         f"d {o.d_min_m:6.2f}..{o.d_max_m:6.2f}  v {v}  standing {o.stationary_s:.1f} s")
    if result.compared:
        lines.append(f"agreement with the run: {result.agree} of {result.compared} frames"
                     + (f" (first difference at {result.first_disagreement_s:.2f} s)"
                        if result.first_disagreement_s is not None else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tps_eval.replay.bagio import BagError
    from tps_eval.suite import repo_root

    ap = argparse.ArgumentParser(prog="python -m tps_eval.replay.fallback_trace",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bag", help="rosbag2 (.mcap or directory) of a closed-loop episode (tps-eval closedloop --record)")
    ap.add_argument("--from", dest="t_from", type=float, default=-math.inf, help="first frame printed [s, sim time]")
    ap.add_argument("--to", dest="t_to", type=float, default=math.inf, help="last frame printed [s]")
    ap.add_argument("--ahead", type=float, default=40.0, help="objects listed up to this far ahead of the bumper [m]")
    ap.add_argument("--params", default=None, help="fallback parameter file (default config/fallback_node.param.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="parameter override (repeatable)")
    ap.add_argument("--lights", choices=("auto", "on", "off"), default="auto",
                    help="replay the light readings (auto: where the bag has them)")
    ap.add_argument("--json", default=None, help="also write the trace as JSON")
    args = ap.parse_args(argv)
    params_file = Path(args.params) if args.params else repo_root() / "config" / "fallback_node.param.yaml"
    try:
        result = trace_bag(Path(args.bag), params_file=params_file, overrides=parse_set(args.set),
                           t_from=args.t_from, t_to=args.t_to, ahead_m=args.ahead,
                           lights={"auto": None, "on": True, "off": False}[args.lights])
    except (BagError, ValueError, OSError) as exc:
        print(f"fallback_trace: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_trace(result))
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(result), indent=1, default=str))
    return EXIT_OK if result.frames else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
