"""Closed-loop episodes: run one (bridge + stack as real nodes over DDS, synchronous mode, via
``tps_bringup``), then score a whole suite against the expert of the same seed.

One episode (:func:`run_episode`, what a worker executes):

1. write the episode's faults / obstacles files and load the configuration's graph file with
   the bridge parameters overridden (scenario, seed, density, clutter, duration, ``exit_on_end``,
   ``episode_log``);
2. start a :class:`~tps_eval.collector.Collector` on the episode's ``ROS_DOMAIN_ID`` (the
   selected trajectory's source, diagnostics), then the graph with the same domain
   (``tps_bringup.runner.GraphProcess``), and wait until the bridge ends the episode;
3. read the bridge's episode log and compute every metric of
   :mod:`tps_eval.metrics`, except EP / PDMS, which need the expert's progress in the same
   world and are filled in by :func:`finalize`.

The episode directory (``<out>/episodes/<case>-s<seed>-<configuration>/``) keeps the log, the
graph's output (``graph.log``) and ``metrics.json``. A failure to run (a node crashed, the
episode timed out, no log) is reported with ``status: "error"`` and its reason; it is never
dropped: it counts as a failed episode in the report.

An *injected* crash (a case's ``node_parameters.<node>.fault_crash_at_s``, tps_eval.faults) is
not a failure: that node runs ``required: false``, so the graph (the bridge) keeps stepping when
it exits, and the episode is scored if it exited with ``EXIT_INJECTED_CRASH`` (or was still
running at the end); any other exit of it, or of any other node, is still an error. The metrics
say what happened under ``injected_crashes``. A node the graph marks ``respawn: true`` is
restarted by the runner (without the crash armed again, tps_common.node.injected_crash_time);
its first process's exit is the one judged, and ``metrics["restarts"]`` lists every restart
(tps_bringup.runner.Restart: node, exit code, monotonic exit and restart times, new pid).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tps_common.node import EXIT_INJECTED_CRASH

from tps_eval import metrics as M
from tps_eval.faults import crash_outcome, crash_overrides, injected_crashes
from tps_eval.suite import CONFIGURATION_ORDER, EpisodeSpec

BRIDGE_NODE = "sim_bridge"
LOG_NAME = "episode_log.npz"
# Wall-clock budget of one episode: startup plus this many wall seconds per simulated second
# (2 shared cores can be ~5x slower than real time in synchronous mode).
EPISODE_STARTUP_BUDGET_S = 90.0
EPISODE_WALL_PER_SIM_S = 12.0
COLLECTOR_SETTLE_S = 0.5     # let the collector's subscriptions exist before the graph starts
COLLECTOR_DRAIN_S = 0.3      # let the last messages arrive after the bridge exits
# A DDS participant's teardown (the collector's, the recorder's) that takes longer has hung: Fast
# DDS 2.14 can deadlock its event thread (PDP::check_remote_participant_liveliness) against a
# receive thread removing a departed node's writer (ResourceEvent::unregister_timer),
# eProsima/Fast-DDS#6502. Seen once: a search worker sat in Collector.close for 15 min.
TEARDOWN_TIMEOUT_S = 20.0
# An episode is "failed" (gets a BEV plot, counted in failure categories) when any holds:
FAILURE_ROUTE_COMPLETION = 0.9
# "off_road": the bridge ended a lane departure (tps_sim.world.world.END_OFF_ROAD); scored, DAC 0
COMPLETED_END_REASONS = ("duration", "route_end", "off_road")


@dataclass(frozen=True)
class EpisodeResult:
    """What a worker returns: the spec, status ("ok" | "error"), metrics (None on error),
    diagnostics errors heard, the reason of an error, and where the files are."""

    spec: dict
    status: str
    metrics: dict | None
    error: str
    episode_dir: str
    log_path: str
    wall_s: float
    diagnostics_errors: list

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dict(self.__dict__)


def episode_dir(spec: EpisodeSpec) -> Path:
    """Where one episode's files go."""
    return Path(spec.out_dir) / "episodes" / spec.key


# The graph stays up this long after the episode so the collector, which discovers the stack's
# nodes over DDS in parallel with the episode, still gets the arbiter's (transient-local) selected
# trajectories: with the bridge's default 0.5 s, 1 in 7 six-second episodes ended unmeasured
# (fallback_share None) on this 2-core machine.
EXIT_LINGER_S = 2.0


def bridge_overrides(spec: EpisodeSpec, edir: Path) -> list[str]:
    """``tps_bringup`` ``--set`` overrides that configure the bridge for ``spec``."""
    faults = ""
    if spec.faults:
        (edir / "faults.json").write_text(json.dumps(spec.faults))
        faults = str(edir / "faults.json")
    obstacles = ""
    if spec.obstacles:
        (edir / "obstacles.json").write_text(json.dumps(spec.obstacles))
        obstacles = str(edir / "obstacles.json")
    adversary = ""
    if spec.adversary:
        (edir / "adversary.json").write_text(json.dumps(spec.adversary))
        adversary = str(edir / "adversary.json")
    p = f"nodes.{BRIDGE_NODE}.parameters."
    # String values are YAML-quoted so that the override parser keeps them strings.
    return [f"{p}scenario='{spec.scenario}'", f"{p}seed={int(spec.seed)}",
            f"{p}density={float(spec.density)}", f"{p}clutter='{spec.clutter}'",
            f"{p}duration_s={float(spec.duration_s)}", f"{p}faults='{faults}'",
            f"{p}obstacles='{obstacles}'", f"{p}adversary='{adversary}'", f"{p}instruction='{spec.instruction}'",
            f"{p}exit_on_end=true", f"{p}exit_linger_s={EXIT_LINGER_S}",
            f"{p}episode_log='{edir / LOG_NAME}'"] + node_overrides(spec)


def node_overrides(spec: EpisodeSpec) -> list[str]:
    """``--set`` overrides of the case's ``node_parameters`` (e.g. a detector fault); values as
    JSON, which the override parser reads as YAML (booleans, numbers, quoted strings)."""
    return [f"nodes.{node}.parameters.{k}={json.dumps(v)}"
            for node, params in sorted(spec.node_parameters.items()) for k, v in sorted(params.items())]


def episode_wall_budget_s(spec: EpisodeSpec) -> float:
    """Wall-clock limit of one episode [s]."""
    return EPISODE_STARTUP_BUDGET_S + EPISODE_WALL_PER_SIM_S * float(spec.duration_s)


RECORD_NAME = "episode.mcap"
# The stack's topics in the sim graphs (config/graph/sim_*.yaml), subscribed before the graph starts
# like the bridge's: discovery alone can join after a short synchronous episode's last step on two
# loaded cores (the control and fallback topics are volatile, so a late subscription records
# nothing). Anything else the graph publishes is still recorded as it is discovered.
STACK_RECORD_TOPICS: dict[str, str] = {
    "/tps/perception/detections": "tps_msgs/msg/DetectedAgents",
    "/tps/perception/tokens": "tps_msgs/msg/AgentTokens",
    "/tps/perception/traffic_lights": "tps_msgs/msg/TrafficLightStates",
    "/tps/planning/candidate_trajectory": "tps_msgs/msg/PlannedTrajectory",
    "/tps/planning/fallback_trajectory": "tps_msgs/msg/PlannedTrajectory",
    "/tps/planning/trajectory": "tps_msgs/msg/PlannedTrajectory",
    "/tps/monitor/status": "tps_msgs/msg/MonitorStatus",
    "/carla/ego_vehicle/vehicle_control_cmd": "carla_msgs/msg/CarlaEgoVehicleControl",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
# Of those, the ones the stack publishes transient local (SELECTED_TRAJECTORY_QOS).
STACK_RECORD_LATCHED = {"/tps/planning/trajectory"}


def graph_output_topics(graph) -> set[str]:
    """The topics the graph's stack nodes (all but the bridge) publish by remapping an
    ``~/output/...`` name."""
    return {dst for node in graph.nodes if node.name != BRIDGE_NODE
            for src, dst in node.remaps if src.startswith("~/output/")}


def _episode_recorder(domain_id: int, edir: Path, graph):
    """``closedloop --record``: every topic of the episode's domain into ``<edir>/episode.mcap``
    (the bridge's and the stack's known topics subscribed before the graph starts, any other as
    discovered), so a failed episode can be replayed through a changed stack (``tps-replay``).
    The recorder's ready node appears once it hears every publisher of the graph's known outputs;
    the bridge waits for it (:func:`_record_overrides`)."""
    from tps_sim import conversions as conv

    from tps_eval.replay.recorder import EpisodeRecorder

    target = edir / RECORD_NAME
    if target.exists():
        target.unlink()
    fixed = {**STACK_RECORD_TOPICS, **conv.TOPIC_TYPES}
    return EpisodeRecorder(domain_id, target, fixed=fixed,
                           latched=set(conv.LATCHED_TOPICS) | STACK_RECORD_LATCHED,
                           ready_topics=graph_output_topics(graph) & set(STACK_RECORD_TOPICS))


def _record_overrides(graph) -> list[str]:
    """The bridge override that holds step 0 until the episode recorder is ready as well as the
    nodes the graph already waits for."""
    from tps_eval.replay.recorder import READY_NODE

    if not graph_output_topics(graph) & set(STACK_RECORD_TOPICS):
        return []  # nothing the recorder waits for (the expert graph): no ready node will appear
    bridge = next(n for n in graph.nodes if n.name == BRIDGE_NODE)
    waiting = [n.strip() for n in str(bridge.parameters.get("wait_for_nodes", "")).split(",") if n.strip()]
    return [f"nodes.{BRIDGE_NODE}.parameters.wait_for_nodes='{','.join(waiting + [READY_NODE])}'"]


MONITOR_RECORD_NAME = "monitor.jsonl"


def monitor_overrides(graph, edir: Path) -> list[str]:
    """Every monitor_node of the graph writes its per-cycle record (state, certainty, signals) to
    the episode directory: what ``tps-eval calibrate-monitor`` fits the thresholds on."""
    return [f"nodes.{n.name}.parameters.record_path='{edir / MONITOR_RECORD_NAME}'"
            for n in graph.nodes if n.executable == "monitor_node"]


def close_within(close, what: str, timeout_s: float | None = None) -> str:
    """Call ``close`` on a daemon thread and wait at most ``timeout_s`` (default
    TEARDOWN_TIMEOUT_S): "" when it returned (its exception is raised here), else a note naming
    what hung. The hung thread is abandoned; the episode's result is not."""
    timeout_s = TEARDOWN_TIMEOUT_S if timeout_s is None else timeout_s
    raised: list = []

    def run() -> None:
        try:
            close()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            raised.append(exc)

    t = threading.Thread(target=run, name=f"tps-eval-close-{what}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        return (f"{what} teardown hung > {timeout_s:.0f} s (a Fast DDS participant deadlock, "
                f"eProsima/Fast-DDS#6502): abandoned")
    if raised:
        raise raised[0]
    return ""


def _exit_hard_at_exit() -> None:
    """After a hung DDS teardown a pool worker must not run Fast DDS's static destructors at exit
    (they would wait on the deadlocked participant and the pool's shutdown on the worker): it ends
    with os._exit once Python's own exit handlers ran. Only in a multiprocessing child; another
    process keeps its normal exit (and exit status)."""
    import atexit
    import multiprocessing as mp

    if mp.parent_process() is None:
        return
    atexit.register(lambda: (sys.stdout.flush(), sys.stderr.flush(), os._exit(0)))


def run_episode(spec: EpisodeSpec, domain_id: int) -> dict:
    """Run one closed-loop episode on ``domain_id`` and score it (see module docstring).

    Never raises for a failed episode: the returned dict (:class:`EpisodeResult`) says why.
    """
    from tps_bringup.graph import load_graph
    from tps_bringup.runner import GraphProcess
    from tps_sim.episode_log import load_episode_log

    from tps_eval.collector import Collector, monitor_samples
    from tps_eval.road import road_for_scenario
    from tps_eval.trace import trace_from_log

    t0 = time.monotonic()
    edir = episode_dir(spec)
    edir.mkdir(parents=True, exist_ok=True)
    log_path = edir / LOG_NAME
    if log_path.exists():
        log_path.unlink()
    collector = recorder = None
    error = ""
    graph_warning = ""
    diag_errors: list = []
    collected = None
    crashes = injected_crashes(spec.node_parameters)   # {node: sim time}: the graph outlives them
    crash_rows: list = []
    restarts: list = []
    try:
        graph = load_graph(spec.graph, bridge_overrides(spec, edir) + crash_overrides(crashes))
        graph = load_graph(spec.graph, bridge_overrides(spec, edir) + crash_overrides(crashes)
                           + monitor_overrides(graph, edir))
        if spec.record:
            graph = load_graph(spec.graph, bridge_overrides(spec, edir) + crash_overrides(crashes)
                               + monitor_overrides(graph, edir) + _record_overrides(graph))
            recorder = _episode_recorder(domain_id, edir, graph)
            time.sleep(COLLECTOR_SETTLE_S)
        if spec.configuration != "expert":
            collector = Collector(domain_id)
            time.sleep(COLLECTOR_SETTLE_S)
        env = {"ROS_DOMAIN_ID": str(int(domain_id)),
               "ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                               "LOCALHOST")}
        with open(edir / "graph.log", "w") as out:
            gp = GraphProcess(graph, env=env, output=out, colour=False)
            gp.start()
            code = gp.wait(episode_wall_budget_s(spec))
            if code is None:
                error = f"episode exceeded its wall budget of {episode_wall_budget_s(spec):.0f} s"
                gp.stop()
            elif code != 0 and not _episode_completed(log_path):
                error = f"graph exited with code {code}: {gp.failure or 'see graph.log'}"
            elif code != 0:
                # The bridge finished the episode and wrote its log; a node that was slow to stop
                # afterwards (2 loaded cores) does not invalidate what was driven.
                graph_warning = f"graph exited with code {code} after the episode: {gp.failure}"
            if crashes and code is not None:
                # a respawned node (graph key respawn) is judged by its first process's exit
                crash_rows, crash_error = crash_outcome(crashes, {
                    c.label: ((c.exits[0][0], False) if c.restarts else (c.returncode, bool(c.signals_sent)))
                    for c in gp.children}, EXIT_INJECTED_CRASH)
                error = error or crash_error
            restarts = [r.to_dict() for r in gp.restarts]
        if collector is not None:
            time.sleep(COLLECTOR_DRAIN_S)
            collected = collector.data()
            diag_errors = collected.diagnostics_errors
    except Exception as exc:  # noqa: BLE001 - any failure becomes a reported episode error
        error = f"{type(exc).__name__}: {exc}"
        (edir / "error.txt").write_text(traceback.format_exc())
    finally:
        hung = []
        if collector is not None:
            hung.append(close_within(collector.close, "collector"))
        if recorder is not None:
            try:
                hung.append(close_within(recorder.close, "episode recorder"))
            except Exception as exc:  # noqa: BLE001 - a recording problem never loses the episode
                (edir / "record_error.txt").write_text(f"{type(exc).__name__}: {exc}")
        hung = [h for h in hung if h]
        if hung:
            graph_warning = "; ".join(([graph_warning] if graph_warning else []) + hung)
            _exit_hard_at_exit()
    metrics = None
    if not error:
        try:
            log = load_episode_log(log_path)
            meta = {"scenario": spec.scenario, "seed": spec.seed, "case": spec.case_id,
                    "configuration": spec.configuration}
            trace = trace_from_log(log, road_for_scenario(spec.scenario), collected, meta,
                                   route_goal_m=spec.route_goal_m)
            metrics = M.evaluate_episode(trace).to_dict()
            metrics["end_reason"] = log["meta"].get("end_reason", "")
            metrics["graph_warning"] = graph_warning
            metrics["trajectories_heard"] = collected.trajectories if collected else None
            # the monitor's timeline, transitions and state shares (None: no monitor ran)
            metrics["monitor"] = M.monitor_summary(monitor_samples(collected, log["stamp_s"],
                                                                   log["t_s"]))
            if crashes:
                metrics["injected_crashes"] = crash_rows
            if restarts:   # respawning nodes that were restarted (tps_bringup.runner.Restart)
                metrics["restarts"] = restarts
            if spec.configuration != "expert" and collected is not None \
                    and collected.trajectories == 0:
                error = "no selected trajectory was heard on /tps/planning/trajectory"
        except Exception as exc:  # noqa: BLE001
            error = f"scoring failed: {type(exc).__name__}: {exc}"
            (edir / "error.txt").write_text(traceback.format_exc())
    result = EpisodeResult(spec.to_dict(), "error" if error else "ok", metrics, error, str(edir),
                           str(log_path), time.monotonic() - t0, list(diag_errors))
    (edir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=1, default=float))
    return result.to_dict()


def _episode_completed(log_path: Path) -> bool:
    """The bridge wrote its log and the episode ended by duration or at the route's end."""
    from tps_sim.episode_log import EpisodeLogError, load_episode_log

    try:
        return load_episode_log(log_path)["meta"].get("end_reason") in COMPLETED_END_REASONS
    except EpisodeLogError:
        return False


# --- suite-level scoring ---------------------------------------------------------------------
def failure_categories(result: dict) -> list[str]:
    """Why an episode counts as failed (empty list: it did not): ``error``, ``collision``
    (at-fault), ``off_road`` (DAC 0), ``route_incomplete`` (completion < 0.9),
    ``step_timeouts``, ``red_light`` (a red-light violation, TLC 0)."""
    if result["status"] != "ok" or result["metrics"] is None:
        return ["error"]
    m = result["metrics"]
    cats = []
    if m["at_fault_collisions"] > 0:
        cats.append("collision")
    if m["dac"] < 1.0:
        cats.append("off_road")
    if m["route_completion"] < FAILURE_ROUTE_COMPLETION:
        cats.append("route_incomplete")
    if m["step_timeouts"] > 0:
        cats.append("step_timeouts")
    if m.get("red_light_violations", 0) > 0:
        cats.append("red_light")
    return cats


def finalize(results: Sequence[dict]) -> dict:
    """EP / PDMS against the expert of the same (case, seed), failure categories, and aggregates
    per configuration. Results are sorted (case, seed, configuration) first, so the outcome does
    not depend on the order the executor finished them in.

    Returns:
        {"<configuration>": aggregates, ..., "episodes": [result dicts]}; a configuration's
        aggregates also count its ``errors`` (episodes that did not run).
    """
    order = {c: k for k, c in enumerate(CONFIGURATION_ORDER)}
    res = sorted((dict(r) for r in results),
                 key=lambda r: (r["spec"]["case_id"], r["spec"]["seed"],
                                order.get(r["spec"]["configuration"], 9)))
    expert_progress: dict = {}
    for r in res:
        s = r["spec"]
        if s["configuration"] == "expert" and r["metrics"] is not None:
            expert_progress[(s["case_id"], s["seed"])] = r["metrics"]["progress_m"]
    for r in res:
        s = r["spec"]
        if r["metrics"] is not None:
            ref = expert_progress.get((s["case_id"], s["seed"]))
            r["metrics"] = M.with_reference(r["metrics"], ref)
        r["failures"] = failure_categories(r)
    out: dict = {}
    configs = sorted({r["spec"]["configuration"] for r in res}, key=lambda c: order.get(c, 9))
    for cfg in configs:
        rs = [r for r in res if r["spec"]["configuration"] == cfg]
        ok = [r["metrics"] for r in rs if r["metrics"] is not None]
        agg = M.aggregate(ok)
        agg["episodes"] = len(rs)
        agg["errors"] = sum(1 for r in rs if r["status"] != "ok")
        agg["scored_episodes"] = len(ok)
        # an episode that did not run cannot count as collision-free
        if rs and agg["errors"]:
            agg["collision_rate"] = ((agg.get("collision_rate") or 0.0) * len(ok)
                                     + agg["errors"]) / len(rs)
        cats: dict = {}
        for r in rs:
            for c in r["failures"]:
                cats[c] = cats.get(c, 0) + 1
        agg["failure_categories"] = cats
        agg["failed_episodes"] = sum(1 for r in rs if r["failures"])
        out[cfg] = agg
    out["episodes"] = res
    return out


def per_case_table(final: dict, configuration: str = "stack") -> list[dict]:
    """Rows per case for one configuration: collisions, route completion, PDMS, e2e p50/p99
    (means over the case's seeds)."""
    rows: dict = {}
    for r in final["episodes"]:
        s = r["spec"]
        if s["configuration"] != configuration:
            continue
        rows.setdefault(s["case_id"], []).append(r)
    out = []
    for case, rs in rows.items():
        ms = [r["metrics"] for r in rs if r["metrics"] is not None]
        agg = M.aggregate(ms) if ms else {}
        out.append({"case": case, "episodes": len(rs),
                    "errors": sum(1 for r in rs if r["status"] != "ok"),
                    "at_fault_collisions": sum(m["at_fault_collisions"] for m in ms),
                    "route_completion": agg.get("route_completion"),
                    "pdm_score": agg.get("pdm_score"),
                    "tlc": agg.get("tlc"),
                    "red_light_violations": agg.get("red_light_violations"),
                    "pdm_score_tlc": agg.get("pdm_score_tlc"),
                    "fallback_share": agg.get("fallback_share"),
                    "e2e_latency_p50_ms": agg.get("e2e_latency_p50_ms"),
                    "e2e_latency_p99_ms": agg.get("e2e_latency_p99_ms")})
    return out


