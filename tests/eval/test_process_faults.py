"""Process faults (issue 19, item 5): the full stack closed loop (configuration ``stack``,
config/graph/sim_stack.yaml with one node marked ``respawn: true``) over real DDS, one short
episode per node, whose process -- perception, planner or monitor -- is killed mid-episode
(``fault_crash_at_s``: ``os._exit(70)``, no cleanup) and respawned by the graph runner
(tps_bringup.runner; the respawned process does not arm the crash again).

Each episode must show, from what was published (a listener on the episode's ROS domain records
every selected trajectory, monitor status, candidate and token message with its stamp and the
wall time it arrived) and from the episode's metrics:

- the crash happened once (``injected_crashes``) and the runner restarted the node once
  (``metrics["restarts"]``);
- while the node is down (from the crash stamp until the respawned process publishes again) the
  arbiter publishes every step, and hands over to the fallback as it is designed to: the last
  candidate is followed at most ``watchdog_timeout_s`` (sim) after its stamp, then the arbiter
  blends into the fallback for ``blend_window_s``; from then on, until the node is back, every
  step is the fallback or the minimal-risk stop (config/trajectory_arbiter.param.yaml);
- after the restart the monitor returns to NOMINAL and the planner's candidate is selected again,
  or, where the monitor still distrusts the planner when the episode ends, every cycle of its last
  ``JUDGED_TAIL_S`` judged the planner's candidate with every input live (the planner's own
  signals decided; the reasons are printed);
- no at-fault collision.

The figures (kill -> fallback selected in cycles, kill -> node publishing again in wall s and
sim s, kill -> NOMINAL again) are printed (``pytest -s``) and written next to the episode
(``process_fault.json``).
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest
import yaml

CRASH_AT_S = 3.0            # sim time of the kill; the stack drives NOMINAL before it
CYCLE_S = 0.1
REPO = Path(__file__).resolve().parents[2]
STACK_GRAPH = REPO / "config" / "graph" / "sim_stack.yaml"
ARBITER_PARAMS = REPO / "config" / "trajectory_arbiter.param.yaml"
# What each node publishes that tells it is back: (topic, message type name in tps_msgs).
NODE_OUTPUT = {
    "perception": "/tps/perception/tokens",
    "planner": "/tps/planning/candidate_trajectory",
    "monitor": "/tps/monitor/status",
}
SELECTED = "/tps/planning/trajectory"
# The arbiter never restarts, so what it saw has no discovery race: its per-cycle diagnostic tells
# how old its newest planner candidate / monitor status was. A respawned node's first messages can
# reach the arbiter before the listener has matched the new publisher (volatile QoS: those are lost
# to the listener), so for these two nodes "back" is also read off the arbiter's ages.
ARBITER_DIAG = "trajectory_arbiter: mode"
ARBITER_AGE_KEY = {"planner": "planner_age_ms", "monitor": "monitor_age_ms"}


def arbiter_hold_s() -> float:
    """How long (wall s) the lockstep arbiter holds frame k for the planner's candidate and the
    monitor's status of k (candidate_wait_s, monitor_wait_s) before it marks them not answering."""
    graph = yaml.safe_load(STACK_GRAPH.read_text())
    (arbiter,) = [n for n in graph["nodes"] if n["name"] == "trajectory_arbiter"]
    return max(float(arbiter["parameters"]["candidate_wait_s"]), float(arbiter["parameters"]["monitor_wait_s"]))


# Per node: (episode duration [sim s], respawn delay [wall s]). The lockstep arbiter holds the frame
# a node died on for up to arbiter_hold_s() (5 s wall); a node back within that hold misses a single
# cycle (the arbiter only starts its blend), so every node respawns after the hold: the arbiter then
# drives without it for a while, the case to check. (The planner once respawned after 0.5 s, counting
# on its slow reload; on an idle machine it was back at 3.1 s sim, within the hold, and the test
# failed "before the hand-over could end": a host-speed assumption.) Measured on this 2-core machine
# (crash at 3.0 s): the planner (6 s delay, a training job beside it) published again 19-20 s wall /
# 13.5-14.3 s sim after the kill -- without the planner the loop runs ~10 steps per wall second --
# and was NOMINAL again at 21.8 s sim, hence its 30-s episode (in 20 s it never got back); earlier
# (0.5 s delay, load 4-11) its reload took 15-18 s wall, NOMINAL again at 13.2 s. Perception (0.5 s delay) published again 6-16 s wall /
# 1.2-2.9 s sim after the kill, NOMINAL again at 5.3-12.4 s (the monitor's hysteresis, once a spell
# of DEGRADED/FALLBACK while the tracker re-converged); the monitor (6 s delay) NOMINAL again at 5.2 s.
# Since the closed loop's monitor judges a candidate missing for 2 frames a silent planner
# (sim_stack.yaml planner_timeout_s 0.2), the respawned planner's first, slow frames (a 0.3-s gap at
# 23.1 s) restart the MINIMAL_RISK latch's recovery: NOMINAL again at 28.0 s in 3 runs of 3, the
# handback not finished by 30 s -- hence 36 s. The monitor's case: in a fresh-clone CI run its
# respawned node was NOMINAL at 7.6 s, the planner braked with no cause at 8.4 s (FALLBACK,
# unjustified_braking) and the monitor was NOMINAL again at 9.7 s, the handback (1.5 s) unfinished
# by 10 s -- hence 14 s. The planner's case again (fresh-clone CI, 2026-12-05): its respawned process
# was ready 16 s wall after the kill (the killed one's shared-memory DDS port still locked: it fell
# back to UDP), the episode ended 6 s wall later, and its latched instruction had not arrived by
# then; run alone the same case left it 12 s -- hence 50 s. The monitor's case met the same lock
# (fresh-clone CI, 2026-12-05): its respawned process was ready 6.6 s wall after the kill over UDP,
# then published nothing in the 11.4 s wall the 14-s episode had left (run alone: publishing again
# 8.2-8.8 s wall / 2.8-3.0 s sim after the kill, 3 runs) -- hence 30 s.
NODE_CASES = {
    "perception": (18.0, arbiter_hold_s() + 1.0),
    "planner": (50.0, arbiter_hold_s() + 1.0),
    "monitor": (30.0, arbiter_hold_s() + 1.0),
}


class Listener:
    """Every message of the topics above on ``domain_id``: (monotonic arrival, stamp, value)."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tps_msgs.msg import AgentTokens, MonitorStatus, PlannedTrajectory

        self.rows: dict[str, list[tuple[float, float, int]]] = {t: [] for t in [*NODE_OUTPUT.values(), SELECTED]}
        self.rows["arbiter"] = []       # (arrival, cycle stamp, {planner_age_ms, monitor_age_ms})
        self._lock = threading.Lock()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.node = rclpy.create_node("process_fault_listener", context=self.context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(AgentTokens, NODE_OUTPUT["perception"],
                                      self._cb(NODE_OUTPUT["perception"], lambda m: int(m.status)), qos)
        self.node.create_subscription(PlannedTrajectory, NODE_OUTPUT["planner"],
                                      self._cb(NODE_OUTPUT["planner"], lambda m: int(m.source)), qos)
        self.node.create_subscription(MonitorStatus, NODE_OUTPUT["monitor"],
                                      self._cb(NODE_OUTPUT["monitor"], lambda m: int(m.state)), qos)
        self.node.create_subscription(PlannedTrajectory, SELECTED, self._cb(SELECTED, lambda m: int(m.source)),
                                      latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                      QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                                                 reliability=ReliabilityPolicy.RELIABLE))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _cb(self, topic: str, value):
        def on_msg(msg) -> None:
            now = time.monotonic()
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            with self._lock:
                self.rows[topic].append((now, stamp, value(msg)))
        return on_msg

    def _on_diagnostics(self, msg) -> None:
        now = time.monotonic()
        for st in msg.status:
            if st.name == ARBITER_DIAG:
                values = {kv.key: kv.value for kv in st.values}
                ages = {k: float(values[k]) for k in ARBITER_AGE_KEY.values() if k in values}
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                with self._lock:
                    self.rows["arbiter"].append((now, stamp, ages))

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown races end the loop
                if self._stop.is_set() or not self.context.ok():
                    break
                raise

    def close(self) -> dict[str, list[tuple[float, float, int]]]:
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            self.context.try_shutdown()
        with self._lock:
            return {k: list(v) for k, v in self.rows.items()}


# The monitor's wall-clock health inputs -- other nodes' processing_time ERROR diagnostics and
# perception's processing time against processing_budget_ms -- depend on the host's load, not on the
# crash (config/replay/regression.yaml leaves them out for the same reason): on a loaded CI host a
# spell of slow cycles can hold the monitor DEGRADED after the restart. This test is about the
# crash and the hand-over, so they are left out here; every other input (staleness, heartbeats,
# the planner's silence) still counts.
HOST_LOAD_INDEPENDENT_MONITOR = {
    "health_ignore_prefixes": ",".join(f"{n}: processing_time" for n in
                                       ("perception", "traffic_light_reader", "planner", "fallback",
                                        "trajectory_arbiter", "controller")),
    "processing_budget_ms": 100000.0,   # the schema's maximum
}


def episode_node_parameters(node: str) -> dict:
    """The case's node parameters: the crash of ``node`` and the monitor's health inputs that
    depend on the host's load left out."""
    params = {"monitor": dict(HOST_LOAD_INDEPENDENT_MONITOR)}
    params.setdefault(node, {})["fault_crash_at_s"] = CRASH_AT_S
    return params


def respawn_graph(tmp_path: Path, node: str, delay_s: float) -> Path:
    """sim_stack.yaml with ``node`` respawning (parameter files made absolute: the copy lives in
    tmp_path)."""
    data = yaml.safe_load(STACK_GRAPH.read_text())
    (entry,) = [n for n in data["nodes"] if n["name"] == node]
    entry["respawn"] = True
    entry["respawn_delay_s"] = delay_s
    for n in data["nodes"]:
        n["params"] = [str(REPO / p) for p in n.get("params", [])]
    path = tmp_path / f"sim_stack_respawn_{node}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_process_fault_episode(tmp_path: Path, node: str) -> tuple[dict, dict]:
    """One stack episode whose ``node`` is killed at CRASH_AT_S and respawned; returns (the episode
    result, what the listener heard)."""
    from tps_eval.executors import default_domain_base
    from tps_eval.runner import run_episode
    from tps_eval.suite import parse_suite, plan_episodes

    duration_s, delay_s = NODE_CASES[node]
    suite = parse_suite({
        "name": f"process_fault_{node}", "seeds": "0:1",        # a TRAIN seed
        "configurations": ["stack"], "graphs": {"stack": str(respawn_graph(tmp_path, node, delay_s))},
        "defaults": {"duration_s": duration_s, "density": 0.6, "clutter": "low", "route_goal_m": 60.0},
        "cases": [{"scenario": "highway", "id": f"{node}_killed",
                   "node_parameters": episode_node_parameters(node)}]})
    (spec,) = [s for s in plan_episodes(suite, tmp_path / "run") if s.configuration == "stack"]   # no expert
    domain = default_domain_base()
    listener = Listener(domain)
    try:
        result = run_episode(spec, domain)
    finally:
        heard = listener.close()
    Path(result["episode_dir"], "heard.json").write_text(json.dumps(heard))   # for a look after a failure
    return result, heard


JUDGED_TAIL_S = 2.0
# Monitor reasons that say a cycle did not judge the planner's candidate with every input live.
NOT_JUDGED = ("WARMING_UP", "not evaluated", "CRITICAL planner_silent", "CRITICAL perception_dead",
              "CRITICAL fallback_input_dead", "CRITICAL ego_state", "CRITICAL candidate", "stale")


def monitor_rows(result: dict, from_s: float) -> list[dict]:
    """The monitor's cycles recorded by the evaluation (episode ``monitor.jsonl``) from ``from_s``."""
    path = Path(result["episode_dir"]) / "monitor.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    return [r for r in rows if r.get("stamp_s", -1.0) >= from_s - 1e-6]


def not_judged(row: dict) -> list[str]:
    """The reasons of a monitor cycle saying it did not judge the candidate with every input live."""
    return [why for why in row.get("reasons") or () if any(k in why for k in NOT_JUDGED)]


def monitor_story(result: dict, from_s: float, limit: int = 40) -> str:
    """The monitor's recorded cycles from ``from_s`` on: one line per change of state or reasons,
    for a failure message."""
    rows = monitor_rows(result, from_s)
    if not rows:
        return "(no monitor cycle recorded)"
    lines, last = [], None
    for row in rows:
        key = (row.get("state"), tuple(row.get("reasons") or ()))
        if key != last:
            text = f"{row['stamp_s']:.1f} s state {row.get('state')} certainty " \
                   f"{row.get('certainty', float('nan')):.2f}: {'; '.join(row.get('reasons') or ())}"
            lines.append("  " + (text if len(text) <= 300 else text[:297] + "..."))
            last = key
    return "\n".join(lines[:limit]) or "(no cycle recorded)"


def safe_blends(sources: list[tuple[float, int]], safe: tuple) -> set[float]:
    """Stamps (rounded to 1 ms) of the SOURCE_BLEND runs in ``sources`` ((stamp, source) in
    stamp order) whose last source before and first source after are both in ``safe``."""
    from tps_msgs.msg import PlannedTrajectory

    out: set[float] = set()
    i = 0
    while i < len(sources):
        if sources[i][1] != PlannedTrajectory.SOURCE_BLEND:
            i += 1
            continue
        j = i
        while j < len(sources) and sources[j][1] == PlannedTrajectory.SOURCE_BLEND:
            j += 1
        if i > 0 and j < len(sources) and sources[i - 1][1] in safe and sources[j][1] in safe:
            out.update(round(s, 3) for s, _ in sources[i:j])
        i = j
    return out


def test_only_blends_between_safe_sources_count_as_safe():
    from tps_msgs.msg import PlannedTrajectory as P

    safe = (P.SOURCE_FALLBACK, P.SOURCE_MINIMAL_RISK)
    seq = [(3.0, P.SOURCE_PLANNER), (3.1, P.SOURCE_BLEND), (3.2, P.SOURCE_FALLBACK),
           (13.5, P.SOURCE_FALLBACK), (13.6, P.SOURCE_BLEND), (13.7, P.SOURCE_BLEND),
           (13.8, P.SOURCE_MINIMAL_RISK), (20.0, P.SOURCE_BLEND), (20.1, P.SOURCE_PLANNER)]
    assert safe_blends(seq, safe) == {13.6, 13.7}
    assert safe_blends(seq[:6], safe) == set(), "a blend still running at the end is not known to be safe"


def analyse(node: str, result: dict, heard: dict) -> dict:
    """The figures of one process-fault episode (see the module docstring); asserts what must hold."""
    from tps_msgs.msg import MonitorStatus, PlannedTrajectory

    assert result["status"] == "ok", result["error"]
    m = result["metrics"]
    (crash,) = m["injected_crashes"]
    assert crash["node"] == node and crash["crashed"] and crash["exit_code"] == 70, crash
    restarts = m.get("restarts") or []
    assert [(r["node"], r["count"], r["exit_code"]) for r in restarts] == [(node, 1, 70)], restarts
    restart = restarts[0]
    safe = (PlannedTrajectory.SOURCE_FALLBACK, PlannedTrajectory.SOURCE_MINIMAL_RISK)
    eps = 1e-6

    # before the kill the learned planner drives (NOMINAL), so "NOMINAL again" is a recovery
    selected = sorted({round(s, 3): (w, s, v) for w, s, v in heard[SELECTED]}.values(), key=lambda r: r[1])
    before = [v for _, s, v in selected if s < CRASH_AT_S - eps]
    assert PlannedTrajectory.SOURCE_PLANNER in before, f"the planner never drove before the kill: {before}"

    # the respawned process's first output: its stamp (sim) and arrival (wall)
    output = [(w, s) for w, s, _ in heard[NODE_OUTPUT[node]] if s >= CRASH_AT_S - eps]
    assert output, f"the respawned {node} never published again"
    back_wall, back_stamp = min(output, key=lambda r: r[0])
    assert back_wall > restart["restarted_at"], "output after the crash stamp before the restart"
    arbiter = yaml.safe_load(ARBITER_PARAMS.read_text())["/**"]["ros__parameters"]
    # the arbiter leaves the planner's last candidate (of k-1) after at most its watchdog, then
    # blends into the fallback; a blend whose neighbours are both safe is the arbiter easing from the
    # fallback into the minimal-risk stop (seen under load ~9: the respawned planner took 35 s wall
    # to load, the monitor latched MINIMAL_RISK after 10 s sim of FALLBACK and the arbiter blended 0.5 s)
    leave_by = CRASH_AT_S - CYCLE_S + arbiter["watchdog_timeout_s"]
    safe_by = leave_by + arbiter["blend_window_s"]
    eased = safe_blends([(s, v) for _, s, v in selected], safe)
    if node in ARBITER_AGE_KEY:
        # the first cycle, past the watchdog, whose newest message of the node was fresh to the arbiter
        key, fresh_ms = ARBITER_AGE_KEY[node], arbiter["watchdog_timeout_s"] * 1e3
        seen = [s for _, s, ages in heard["arbiter"]
                if s > CRASH_AT_S + arbiter["watchdog_timeout_s"] + eps and ages.get(key, math.inf) < fresh_ms - eps]
        assert heard["arbiter"], "no diagnostics of the arbiter heard"
        back_stamp = min([back_stamp, *seen])
    elif node == "perception":
        # The planner plans only on tokens of its own frame, and the arbiter blends towards it only
        # with a fresh candidate: the planner (or a blend that is not fallback -> minimal risk)
        # selected after the hand-over proves perception was back by that stamp, even where the
        # listener missed the respawned node's first tokens (CI: blend from 7.3 s, the planner at
        # 7.8 s, tokens heard later).
        seen = [s for _, s, v in selected
                if s > safe_by + CYCLE_S + eps and v not in safe and round(s, 3) not in eased]
        back_stamp = min([back_stamp, *seen])

    # while down: the arbiter publishes every step; it leaves the planner's last candidate by
    # leave_by, blends into the fallback, then selects only the fallback / minimal-risk stop
    down = [(s, v) for _, s, v in selected if CRASH_AT_S - eps <= s < back_stamp - eps]
    steps_down = round((back_stamp - CRASH_AT_S) / CYCLE_S)
    assert back_stamp > safe_by + CYCLE_S, f"{node} was back at {back_stamp} s, before the hand-over could end"
    assert len(down) >= steps_down - 1, f"the arbiter published {len(down)} of {steps_down} steps while {node} was down"
    late_planner = [(s, v) for s, v in down if s > leave_by + eps and v == PlannedTrajectory.SOURCE_PLANNER]
    assert not late_planner, f"the planner's stale candidate was followed past the watchdog: {down}"
    not_safe = [(s, v) for s, v in down if s > safe_by + eps and v not in safe and round(s, 3) not in eased]
    assert not not_safe, f"a non-fallback source after the hand-over while {node} was down: {down}"
    first_fallback = min(s for s, v in down if v in safe)
    first_off_planner = min(s for s, v in down if v != PlannedTrajectory.SOURCE_PLANNER)

    # after the restart: NOMINAL again and the planner's candidate selected again -- or, where the
    # monitor does not trust the planner at the end, a monitor back in full: every cycle of the
    # episode's last JUDGED_TAIL_S judged the planner's candidate with every input live, so the
    # planner's own signals decided (seen in CI and here, 1 run in 4: after ~3 s sim of fallback
    # driving the planner's sigma was 5 m and its candidate clipped the road edge; the state's
    # reasons are printed)
    statuses = sorted({round(s, 3): (w, s, v) for w, s, v in heard[NODE_OUTPUT["monitor"]]}.values(),
                      key=lambda r: r[1])
    nominal = [(w, s) for w, s, v in statuses if s >= back_stamp - eps and v == MonitorStatus.STATE_NOMINAL]
    nominal_wall = nominal_stamp = None
    if nominal:
        nominal_wall, nominal_stamp = min(nominal, key=lambda r: r[1])
        assert any(v == PlannedTrajectory.SOURCE_PLANNER for _, s, v in selected if s >= nominal_stamp - eps), (
            f"the planner's candidate was not selected again after NOMINAL at {nominal_stamp:.1f} s (back at "
            f"{back_stamp:.1f} s, episode {NODE_CASES[node][0]} s); selected after it: "
            f"{[(round(s, 1), v) for _, s, v in selected if s >= nominal_stamp - eps][:20]}\n"
            f"the monitor's record (state changes and reasons):\n{monitor_story(result, back_stamp - 1.0)}")
    else:
        tail = monitor_rows(result, NODE_CASES[node][0] - JUDGED_TAIL_S)
        unjudged = [(r["stamp_s"], why) for r in tail for why in not_judged(r)]
        assert tail and not unjudged, (
            f"the monitor never returned to NOMINAL after {node} restarted (back at {back_stamp:.1f} s, "
            f"episode {NODE_CASES[node][0]} s) and did not judge the planner with every input live at the end: "
            f"{unjudged[:5] or 'no cycle recorded'}\nits record (state changes and reasons):\n"
            f"{monitor_story(result, back_stamp - 1.0)}")
        print(f"\n{node}: the monitor judged the planner's candidate with every input live but did not trust it "
              f"before the episode ended:\n{monitor_story(result, back_stamp - 1.0, limit=12)}")
    assert m["at_fault_collisions"] == 0

    figures = {
        "node": node, "crash_at_s": CRASH_AT_S, "duration_s": NODE_CASES[node][0],
        "kill_to_leaving_planner_cycles": round((first_off_planner - CRASH_AT_S) / CYCLE_S),
        "kill_to_fallback_cycles": round((first_fallback - CRASH_AT_S) / CYCLE_S),
        "respawn_delay_s": NODE_CASES[node][1],
        "kill_to_respawn_wall_s": round(restart["restarted_at"] - restart["exited_at"], 3),
        "kill_to_publishing_wall_s": round(back_wall - restart["exited_at"], 2),
        "kill_to_publishing_sim_s": round(back_stamp - CRASH_AT_S, 2),
        "kill_to_nominal_wall_s": None if nominal_wall is None else round(nominal_wall - restart["exited_at"], 2),
        "kill_to_nominal_sim_s": None if nominal_stamp is None else round(nominal_stamp - CRASH_AT_S, 2),
        "steps_on_fallback_while_down": len(down),
        "fallback_share": m["fallback_share"],
        "at_fault_collisions": m["at_fault_collisions"],
        "episode_wall_s": round(result["wall_s"], 1),
    }
    Path(result["episode_dir"], "process_fault.json").write_text(json.dumps(figures, indent=1))
    print(f"\nprocess fault {node}: {json.dumps(figures)}")
    return figures


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("node", ["perception", "planner", "monitor"])
def test_killed_node_is_respawned_and_the_stack_recovers(tmp_path, node):
    result, heard = run_process_fault_episode(tmp_path, node)
    analyse(node, result, heard)
