"""Fuzzing every node of the stack over real DDS (issue 19, item 4).

Each node runs as its own process (its console script, its shipped parameter file, sim time; its
``/clock``, ``/tf``, ``/tf_static`` -- and the monitor's ``/diagnostics`` -- remapped per node, so the
nodes started side by side never see each other's). For every message type a node subscribes to,
hypothesis draws ``TPS_FUZZ_COUNT`` malformed messages (``tests/fuzz/fuzz_msgs.py``: wrong sizes and
layouts, NaN/inf, empty, huge, wrong frames, stamps zero/negative/far past/far future, nanoseconds
>= 1e9, mismatched and huge arrays, unknown enum values). Each one goes out in a *frame*: a fresh
stamp, that input malformed, the node's other inputs valid (latched ones stay as they are), so the
node actually uses it; the next frame goes out once the node answered (an output or a diagnostic of
the frame's stamp) or after ``TPS_FUZZ_ANSWER_WAIT_S``. Per node:

* the process is alive (``poll() is None``) after every input;
* for every input but ``/clock`` the node published an ERROR diagnostic ``<node>: <aspect>`` whose
  aspect or message names the input, while that input was fuzzed (a clock going back or jumping is
  what a simulator reset looks like, so the clock is fuzzed for crashes and recovery only;
  ``KNOWN_SILENT`` lists the inputs still taken silently, printed, not failed);
* it recovers: valid inputs at a fresh stamp give the node's normal output of that stamp again (a
  valid one: status OK, a trajectory that passes ``validate_trajectory``, ...).

Before the fuzzing the same valid inputs must give that output (so the recovery check can fail).
The seed is fixed (``derandomize``): CI replays the same messages. ``make test`` runs the default
count; ``TPS_FUZZ_COUNT=1000`` is the issue's acceptance run (>= 1000 per subscribed type);
``TPS_FUZZ_NODES=planner,fallback`` runs only those nodes.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from hypothesis import HealthCheck, Phase, example, given, settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests" / "planner"))
sys.path.insert(0, str(ROOT / "tests" / "perception"))
import fuzz_msgs as fm  # noqa: E402
from ros_harness import InputMatches, start_node, stop  # noqa: E402

# the acceptance run (1000 per input) takes minutes per node: the suite's 300 s limit scales with it
pytestmark = [pytest.mark.ros, pytest.mark.timeout(max(300, 4 * int(os.environ.get("TPS_FUZZ_COUNT", "10"))))]

FUZZ_COUNT = int(os.environ.get("TPS_FUZZ_COUNT", "10"))   # per input; 1000 in the acceptance run
ANSWER_WAIT_S = float(os.environ.get("TPS_FUZZ_ANSWER_WAIT_S", "0.2"))   # per frame, at most
# A latched input's reader keeps only its newest message (depth 1): frames sent faster than a busy
# node answers them overwrite malformed messages before it takes them. CI saw exactly that: with the
# node behind (its images released without odometry), the empty and random routes -- the two surely
# refused -- were overwritten, the rest were accepted, and no ERROR named the route. Latched inputs
# therefore wait for each frame's answer this long (a node keeping up answers in milliseconds).
LATCHED_ANSWER_WAIT_S = 5.0
ONLY = [k for k in os.environ.get("TPS_FUZZ_NODES", "").split(",") if k]  # e.g. "planner,fallback"
STARTUP_TIMEOUT_S = 120.0     # every node starts at once (the planner loads MiniLM) on 2 loaded cores
RECOVERY_TIMEOUT_S = 30.0     # valid inputs -> the node's output (the planner runs its model)
DIAG_GRACE_S = 1.0            # diagnostics about a topic's last messages may arrive this late
EGO = (100.0, 0.0, 0.0)       # x, y, yaw in map: on the straight route, light 40 m ahead
ROUTE_XY = np.column_stack([np.arange(-20.0, 400.0, 10.0), np.zeros(42)])
CLOCK = "/clock"
# Inputs a node is known to take silently when malformed (no ERROR naming them yet): reported, not
# failed, until their owner adds the check; any other silent input fails the test. None now (the
# monitor's scene and traffic lights were, until monitor_io.check_scene / check_light_states).
KNOWN_SILENT: set[tuple[str, str]] = set()


# ============================================================================ valid messages
def _header(t, frame):
    from tps_common.conversions import header

    return header(t, frame)


def odometry(t):
    from tps_sim import conversions as sc

    return sc.odometry_msg(EGO, 8.0, 0.0, t)


def clock(t):
    from rosgraph_msgs.msg import Clock
    from tps_common.conversions import seconds_to_time

    return Clock(clock=seconds_to_time(t))


def route(t):
    from tps_sim import conversions as sc

    return sc.path_msg(ROUTE_XY, t)


_SCAN = {}


def points(t):
    from planner_helpers import lidar_scan
    from tps_sim import conversions as sc

    if "xyzi" not in _SCAN:   # every 4th return of a real scan: the car 25 m ahead stays visible
        _SCAN["xyzi"] = lidar_scan((0.0, 0.0, 0.0), [(25.0, 0.0, 0.0, 4.5, 1.9, 1.5)])[::4]
    return sc.pointcloud_msg(_SCAN["xyzi"], t, "ego_vehicle/lidar")


def lane_map(t):
    from geometry_msgs.msg import Point
    from tps_msgs.msg import LaneMap, MapLane

    def lane(lane_id, y, **kw):
        return MapLane(id=lane_id, centerline=[Point(x=-60.0, y=y), Point(x=400.0, y=y)], width_m=3.5,
                       speed_limit_mps=12.0, **kw)
    return LaneMap(header=_header(t, "map"), route_lane_ids=["ego"],
                   lanes=[lane("ego", 0.0, left_id="left", can_change_left=True),
                          lane("left", 3.5, right_id="ego", can_change_right=True)])


def monitor_status(t):
    from tps_msgs.msg import MonitorStatus

    return MonitorStatus(header=_header(t, "map"), state=MonitorStatus.STATE_NOMINAL, certainty=0.9,
                         signal_names=["a", "b"], signal_values=[0.1, 0.2], reasons=[])


def trajectory(t, source=1):
    from planner_helpers import constant_speed_trajectory
    from tps_planner import conversions as conv

    return conv.trajectory_to_msg(constant_speed_trajectory(ROUTE_XY, EGO[0] + 20.0, 8.0, t, source=source))


def light_heads():
    from tps_common.traffic_lights import LightHead

    x0 = EGO[0] + 40.0
    return [LightHead(3, (x0 + 3.0, -3.0, 5.0), math.pi, (x0, 0.0), 0.0, 3.5)]


def light_info(t):
    from tps_sim import conversions as sc

    return sc.traffic_light_info_msg(light_heads())


def light_states(t):
    from tps_msgs.msg import TrafficLightState, TrafficLightStates

    return TrafficLightStates(header=_header(t, "map"), lights=[TrafficLightState(
        id=3, state=TrafficLightState.GREEN, confidence=0.9, distance_to_stop_line_m=40.0)])


_CAMERA = {}


def _camera():
    if "cam" not in _CAMERA:
        from tps_sim.sensors.camera import CameraModel, CameraParams

        _CAMERA["cam"] = CameraModel(CameraParams())
    return _CAMERA["cam"]


def image(t):
    from tps_sim import conversions as sc

    cam = _camera()
    h, w = cam.params.height, cam.params.width
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (135, 170, 205)
    img[h // 2:] = (85, 85, 90)
    return sc.image_msg(img, t)


def small_image(t):
    """The planner's camera (160x90)."""
    from tps_sim import conversions as sc

    img = np.zeros((90, 160, 3), np.uint8)
    img[:45] = (135, 170, 205)
    img[45:] = (85, 85, 90)
    return sc.image_msg(img, t)


def camera_info(t):
    from tps_sim import conversions as sc

    return sc.camera_info_msg(_camera().camera_info_fields(), t)


def instruction(t):
    from tps_sim import conversions as sc
    from tps_sim.world.scenarios import Instruction

    return sc.instruction_msg(Instruction("keep lane", 0, 0, 12.0), t)


AGENTS = [(5, 17, 30.0, 0.0, 0.0, 4.5, 1.9, 8.0, 0.0, 0.2), (9, 230, -12.0, 3.5, 0.0, 4.5, 1.9, 12.0, 0.0, 0.3)]


def tokens(t):
    from tps_msgs.msg import AgentToken, AgentTokens

    msg = AgentTokens(header=_header(t, "base_link"), status=0, codebook_size=512, scene_codebook_size=64,
                      scene_codes=[1, 2, 3], scene_quantisation_errors=[0.1, 0.2, 0.3])
    msg.tokens = [AgentToken(agent_id=a[0], code_index=a[1], x=a[2], y=a[3], yaw=a[4], length=a[5], width=a[6],
                             vx=a[7], vy=a[8], quantisation_error=a[9]) for a in AGENTS]
    return msg


def forecasts(t):
    from geometry_msgs.msg import Point
    from tps_msgs.msg import AgentForecast, ForecastMode, Forecasts

    def modes(a):
        return [ForecastMode(probability=1.0 / 3, waypoints=[Point(x=a[2] + a[7] * 0.5 * k * (1 + 0.1 * m),
                                                                 y=a[3] + 0.2 * m * k) for k in range(1, 7)])
                for m in range(3)]
    return Forecasts(header=_header(t, "base_link"),
                     forecasts=[AgentForecast(agent_id=a[0], time_step_s=0.5, modes=modes(a)) for a in AGENTS])


def scene(t):
    from tps_msgs.msg import AgentRelevance, SceneUnderstanding

    return SceneUnderstanding(header=_header(t, "base_link"), scene_class=SceneUnderstanding.SCENE_URBAN,
                              agents=[AgentRelevance(agent_id=a[0], relevance=0.5, intent=1) for a in AGENTS],
                              has_lead_agent=True, lead_agent_id=AGENTS[0][0], rationale="keep lane behind car 5")


def planner_diagnostics(t):
    """What the planner publishes about a frame (the monitor reads its rationale and planning)."""
    from tps_common import diagnostics as diag

    return diag.array(_header(t, "").stamp, [
        diag.status("planner: rationale", diag.OK, "keep lane", {"consistent": True, "consistency_score": 0.9,
                                                                 "claims": "", "violations": ""}),
        diag.status("planner: planning", diag.OK, "planned", {"light": "GREEN"})])


def tf_static(t):
    from tps_sim import conversions as sc

    return sc.tf_static_msg(t_s=0.0)


def tf(t):
    from tps_sim import conversions as sc

    return sc.tf_msg(EGO, t)


# ============================================================================ node specs
@dataclass
class Topic:
    name: str                 # relative to the node ("input/points") or absolute ("/clock")
    make: object              # t -> a valid message
    needles: tuple = ()       # words of which one names this input in an ERROR diagnostic; () = none required
    latched: bool = False     # a transient-local input: re-sent valid at recovery

    @property
    def msg_type(self):
        return type(self.make(1.0))


@dataclass
class Spec:
    executable: str
    name: str
    topics: list              # in the order a frame is sent (the trigger last)
    output: tuple             # (relative topic, message type name in tps_msgs / carla_msgs / ...)
    params: dict = field(default_factory=dict)
    params_file: str | None = None
    valid: object = None      # output message -> True if it is a valid output
    diagnostics: str = "/diagnostics"   # where the node's diagnostics are (remapped when it is an input)
    min_count: int = 0        # malformed messages per input at least (whatever TPS_FUZZ_COUNT says)

    def topic_path(self, topic: Topic) -> str:
        return topic.name if topic.name.startswith("/") else f"/{self.name}/{topic.name}"


def _trajectory_ok(msg) -> bool:
    from tps_planner import conversions as conv
    from tps_planner.trajectory import validate_trajectory

    return validate_trajectory(conv.trajectory_from_msg(msg)) is None


def _status_ok(msg) -> bool:
    return msg.status == 0


LIGHT_INFO = ("traffic_light_info", "traffic light info")
POINTS, ODOM = Topic("input/points", points, ("cloud", "points")), Topic("input/odometry", odometry, ("odometry",))
TF_TOPICS = [Topic("/tf_static", tf_static, ("/tf", "extrinsic"), latched=True), Topic("/tf", tf, ("/tf", "extrinsic"))]
CLOCK_TOPIC = Topic(CLOCK, clock)

SPECS = {
    "controller": Spec(
        "controller_node", "fz_controller",
        [CLOCK_TOPIC, ODOM, Topic("input/trajectory", trajectory, ("trajectory",))],
        ("output/control", "carla_msgs.msg.CarlaEgoVehicleControl"), params_file="controller_node",
        params={"reliable_sensor_qos": True}, valid=lambda m: all(math.isfinite(v) for v in (m.throttle, m.steer, m.brake))),
    "trajectory_arbiter": Spec(
        "trajectory_arbiter", "fz_arbiter",
        [CLOCK_TOPIC, Topic("input/monitor_status", monitor_status, ("monitor",)),
         Topic("input/candidate_trajectory", lambda t: trajectory(t, source=0), ("candidate",)),
         Topic("input/fallback_trajectory", trajectory, ("fallback",))],
        ("output/trajectory", "tps_msgs.msg.PlannedTrajectory"), params_file="trajectory_arbiter",
        valid=_trajectory_ok),
    "fallback": Spec(
        "fallback_node", "fz_fallback",
        [Topic("input/route", route, ("route",), latched=True),
         Topic("input/lane_map", lane_map, ("lane map", "lane_map"), latched=True),
         Topic("input/traffic_light_info", light_info, LIGHT_INFO, latched=True),
         Topic("input/traffic_lights", light_states, ("traffic_lights", "traffic light")),
         Topic("input/monitor_status", monitor_status, ("monitor",)),
         CLOCK_TOPIC, ODOM, *TF_TOPICS, POINTS],
        ("output/trajectory", "tps_msgs.msg.PlannedTrajectory"), params_file="fallback_node",
        params={"use_traffic_lights": True, "reliable_sensor_qos": True}, valid=_trajectory_ok),
    "perception": Spec(
        "perception_node", "fz_perception", [CLOCK_TOPIC, ODOM, *TF_TOPICS, POINTS],
        ("output/detections", "tps_msgs.msg.DetectedAgents"), params_file="perception_node",
        params={"threads": 1, "reliable_sensor_qos": True}, valid=_status_ok),
    "traffic_light_reader": Spec(
        "traffic_light_reader", "fz_lights",
        [Topic("input/route", route, ("route",), latched=True),
         Topic("input/traffic_light_info", light_info, LIGHT_INFO, latched=True),
         CLOCK_TOPIC, *TF_TOPICS, Topic("input/camera_info", camera_info, ("camera_info", "camera info", "intrinsic")),
         ODOM, Topic("input/image", image, ("image",))],
        ("output/traffic_lights", "tps_msgs.msg.TrafficLightStates"), params_file="traffic_light_reader",
        params={"reliable_sensor_qos": True}, valid=lambda m: m.header.frame_id == "map"),
    "planner": Spec(
        "planner_node", "fz_planner",
        [Topic("input/route", route, ("route",), latched=True),
         Topic("input/lane_map", lane_map, ("lane map", "lane_map"), latched=True),
         Topic("input/instruction", instruction, ("instruction",), latched=True),
         Topic("input/traffic_light_info", light_info, LIGHT_INFO, latched=True),
         CLOCK_TOPIC, ODOM, Topic("input/image", small_image, ("image", "camera")),
         Topic("input/tokens", tokens, ("tokens",))],
        ("output/trajectory", "tps_msgs.msg.PlannedTrajectory"), params_file="planner_node",
        params={"image_wait_s": 0.3, "warmup_runs": 1, "threads": 1, "reliable_sensor_qos": True},
        valid=_trajectory_ok),
}
if (Path(sys.executable).parent / "monitor_node").exists():   # issue 15's monitor (added last)
    SPECS["monitor"] = Spec(
        "monitor_node", "fz_monitor",
        [Topic("input/route", route, ("route",), latched=True),
         Topic("input/lane_map", lane_map, ("lane map", "lane_map"), latched=True),
         TF_TOPICS[0], CLOCK_TOPIC, ODOM, TF_TOPICS[1], POINTS, Topic("input/image", image, ("image", "camera")),
         Topic("input/tokens", tokens, ("tokens",)), Topic("input/forecasts", forecasts, ("forecasts",)),
         Topic("input/scene", scene, ("scene",)), Topic("input/traffic_lights", light_states, ("traffic_lights", "traffic light")),
         Topic("/diagnostics", planner_diagnostics, ("diagnostics",)),
         Topic("input/candidate_trajectory", lambda t: trajectory(t, source=0), ("candidate", "trajectory"))],
        ("output/status", "tps_msgs.msg.MonitorStatus"), params_file="monitor_node",
        params={"reliable_sensor_qos": True}, valid=lambda m: m.state <= 3, diagnostics="/fz_monitor/diagnostics",
        min_count=30)   # its cycles wait for many inputs: at 10 per input a loaded host missed some ERRORs


# ============================================================================ DDS rig
def _type(path: str):
    mod, name = path.rsplit(".", 1)
    return getattr(__import__(mod, fromlist=[name]), name)


class Rig:
    """The test's side of one node: a publisher per input (reliable, transient local: it matches
    every subscriber QoS), the node's output by stamp, its diagnostics with their arrival time."""

    def __init__(self, context, spec: Spec, proc):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.spec, self.proc = spec, proc
        self.node = rclpy.create_node(f"{spec.name}_fuzzer", context=context)
        self.exec = rclpy.executors.SingleThreadedExecutor(context=context)
        self.exec.add_node(self.node)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = {t.name: self.node.create_publisher(t.msg_type, self._remapped(t), pub_qos) for t in spec.topics}
        self.outputs: dict[int, object] = {}
        self.diags: list[tuple[float, object]] = []
        self.answered: set[int] = set()     # stamps (ns) of the node's outputs and diagnostics
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.out_sub = self.node.create_subscription(_type(spec.output[1]), f"/{spec.name}/{spec.output[0]}",
                                                     self._on_output, out_qos)
        self.node.create_subscription(DiagnosticArray, spec.diagnostics, self._on_diag,
                                      QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                                                 reliability=ReliabilityPolicy.RELIABLE))
        self.t = 100.0
        self.counts: dict[str, tuple[int, int]] = {}    # topic -> (malformed frames sent, answered)
        # the node's own view (tps_common.readiness): its readers' matched publishers, by topic. The
        # writer side counting the node's readers is not enough: a reader that has not matched the
        # writer yet drops what was sent before (seen in CI: the first inputs fuzzed -- the latched
        # route and light info -- never reached a node started under load, so no ERROR named them)
        self.matches = InputMatches(self.node, spec.name)

    def _remapped(self, topic: Topic) -> str:
        if topic.name in (CLOCK, "/tf", "/tf_static", "/diagnostics"):
            return f"/{self.spec.name}{topic.name}"
        return self.spec.topic_path(topic)

    def _on_output(self, msg) -> None:
        key = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
        self.outputs.setdefault(key, msg)
        self.answered.add(key)

    def _on_diag(self, msg) -> None:
        now = time.monotonic()
        mine = [st for st in msg.status if st.name.startswith(f"{self.spec.name}: ")]
        self.diags.extend((now, st) for st in mine)
        if mine:
            self.answered.add(msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec)

    def spin(self, duration_s: float) -> None:
        end = time.monotonic() + duration_s
        while True:
            self.exec.spin_once(timeout_sec=max(0.0, min(0.01, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def spin_until(self, pred, timeout_s: float, action=None, every_s: float = 1.0) -> bool:
        end = time.monotonic() + timeout_s
        next_action = 0.0
        while time.monotonic() < end:
            if action is not None and time.monotonic() >= next_action:
                action()
                next_action = time.monotonic() + every_s
            self.exec.spin_once(timeout_sec=0.02)
            if pred():
                return True
        return bool(pred())

    def ready(self) -> bool:
        """Both halves of every input matched: the rig's writer counts the node's reader, and the
        node reports that its reader has matched a publisher (the rig's, the only one); and the rig's
        reader of the node's output has matched the node's writer."""
        return (self.out_sub.get_publisher_count() > 0 and not self.unmatched()
                and all(self.node.count_subscribers(self._remapped(t)) > 0 for t in self.spec.topics))

    def unmatched(self) -> list[str]:
        return self.matches.unmatched([self._remapped(t) for t in self.spec.topics])

    def send_frame(self) -> float:
        """Valid inputs at a fresh stamp (latched ones too); returns the stamp."""
        self.t = round(self.t + 0.1, 3)
        for topic in self.spec.topics:
            self.pub[topic.name].publish(topic.make(self.t))
            self.spin(0.005)
        return self.t

    def valid_output(self, timeout_s: float) -> float | None:
        """Send valid frames until one is answered with a valid output of its stamp."""
        sent = []

        def answered():
            return any(self.spec.valid(self.outputs[k]) for k in (round(t * 1e9) for t in sent) if k in self.outputs)

        ok = self.spin_until(answered, timeout_s, action=lambda: sent.append(self.send_frame()), every_s=1.5)
        return sent[-1] if ok else None

    def close(self) -> None:
        self.exec.shutdown()
        self.node.destroy_node()


class NodeDied(AssertionError):
    pass


def fuzz_topic(rig: Rig, topic: Topic, count: int) -> list[str]:
    """Publish ``count`` malformed messages of ``topic`` (hypothesis, fixed seed), each in a frame of
    otherwise valid inputs; returns their descriptions. Raises NodeDied (with the last messages and the log's tail) if the node exits."""
    sent: list[str] = []
    answered = [0]
    pub = rig.pub[topic.name]
    msg_type = topic.msg_type

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(fm.recipes())
    @example(("empty", 0, [(0, 0, 0)]))     # the default message and a fully random one first: every
    @example(("random", 1, [(0, 0, 0)]))    # input sees a surely malformed message even at small counts
    def one(recipe):
        # one frame at a fresh stamp with this input malformed: the node uses it (latched inputs
        # other than this one stay valid and are not re-sent)
        rig.t = round(rig.t + 0.1, 3)
        msg, what = fm.build(msg_type, lambda: topic.make(rig.t), recipe)
        for other in rig.spec.topics:
            if other is topic:
                pub.publish(msg)
            elif not other.latched:
                rig.pub[other.name].publish(other.make(rig.t))
        sent.append(what)
        # paced by the node: the next frame once this one is answered (an output or a diagnostic
        # of its stamp), at most ANSWER_WAIT_S
        key = round(rig.t * 1e9)
        answered[0] += rig.spin_until(lambda: key in rig.answered,
                                      LATCHED_ANSWER_WAIT_S if topic.latched else ANSWER_WAIT_S)
        if rig.proc.poll() is not None:
            raise NodeDied(f"{rig.spec.executable} exited with {rig.proc.returncode} while fuzzing {topic.name}; "
                           f"last messages: {sent[-5:]}")

    one()
    rig.counts[topic.name] = (len(sent), answered[0])
    return sent


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Every node started at once (start-up overlaps); stopped at the end."""
    logs = tmp_path_factory.mktemp("fuzz_logs")
    procs = {}
    for key, spec in SPECS.items():
        if ONLY and key not in ONLY:
            continue
        remaps = {CLOCK: f"/{spec.name}/clock", "/tf": f"/{spec.name}/tf", "/tf_static": f"/{spec.name}/tf_static"}
        if spec.diagnostics != "/diagnostics":
            remaps["/diagnostics"] = spec.diagnostics
        params = {"use_sim_time": True, **spec.params}
        pfile = ROOT / "config" / f"{spec.params_file}.param.yaml" if spec.params_file else None
        procs[key] = start_node(spec.executable, spec.name, remaps, params, logs, params_file=pfile)
    yield procs, logs
    for proc in procs.values():
        stop(proc)


def _log_tail(logs: Path, spec: Spec, n: int = 30) -> str:
    path = logs / f"{spec.name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


# ============================================================================ the test
@pytest.mark.parametrize("key", [k for k in SPECS if not ONLY or k in ONLY])
def test_node_survives_malformed_input_names_it_and_recovers(key, nodes, context):
    procs, logs = nodes
    spec, proc = SPECS[key], procs[key]
    rig = Rig(context, spec, proc)
    try:
        up = rig.spin_until(lambda: proc.poll() is not None or rig.ready(), STARTUP_TIMEOUT_S)
        assert proc.poll() is None, f"{spec.executable} exited with {proc.returncode}:\n{_log_tail(logs, spec)}"
        assert up, (f"{spec.executable} never matched all its inputs; by its own report none yet on "
                    f"{rig.unmatched()} (report: {rig.matches.counts})")
        assert rig.valid_output(RECOVERY_TIMEOUT_S) is not None, \
            f"no valid {spec.output[0]} before fuzzing:\n{_log_tail(logs, spec)}"

        unnamed, counts = [], {}
        for topic in sorted(spec.topics, key=lambda t: t.name == CLOCK):   # the clock last
            start = time.monotonic()
            try:
                sent = fuzz_topic(rig, topic, max(FUZZ_COUNT, spec.min_count))
            except NodeDied as exc:
                raise NodeDied(f"{exc}\n{_log_tail(logs, spec)}") from None
            # a busy node (the planner under load) may still be behind: its answer to the last frame
            # first, so that a latched input's last malformed message is taken before the valid one
            last = round(rig.t * 1e9)
            rig.spin_until(lambda last=last: last in rig.answered or proc.poll() is not None, RECOVERY_TIMEOUT_S)
            if topic.latched:     # the last malformed one must not stay in force for the next inputs
                rig.pub[topic.name].publish(topic.make(rig.t))
            rig.spin(DIAG_GRACE_S)
            assert proc.poll() is None, f"{spec.executable} died after {topic.name}:\n{_log_tail(logs, spec)}"
            counts[topic.name] = len(sent)
            if topic.needles:
                errors = [st for when, st in rig.diags if when >= start and st.level == b"\x02"]
                # the aspect (the status name without "<node>: ") or the message names the input
                said = [f"{st.name.partition(': ')[2]} {st.message}".lower() for st in errors]
                if not any(n in text for text in said for n in topic.needles):
                    unnamed.append((topic.name, sorted({f"{st.name}: {st.message[:60]}" for st in errors})[:5]))
        print(f"\n{spec.executable}: malformed frames per input (sent, answered): {rig.counts}")
        assert all(c >= FUZZ_COUNT for c in counts.values()), counts
        known = [u for u in unnamed if (key, u[0]) in KNOWN_SILENT]
        if known:
            print(f"{spec.executable}: KNOWN GAP, malformed input taken silently: {[u[0] for u in known]}")
        unnamed = [u for u in unnamed if (key, u[0]) not in KNOWN_SILENT]
        assert not unnamed, f"no ERROR diagnostic named these inputs: {unnamed}"
        assert rig.valid_output(RECOVERY_TIMEOUT_S) is not None, \
            f"no valid {spec.output[0]} after fuzzing:\n{_log_tail(logs, spec)}"
        assert proc.poll() is None
    finally:
        rig.close()
