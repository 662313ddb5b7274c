"""Expert check: SUMO driving the ego (``ego_driver="expert"``, the reference of EP) must not cause
a collision, judged by the evaluation's own collision test and at-fault taxonomy::

    tps-eval expert-check --seeds 9000:9050 --duration 30 [--scenarios all] [--json out.json]

Every step of an episode goes through the bridge's episode-log writer (in memory,
:class:`tps_sim.episode_log.EpisodeLog`) and becomes an :class:`~tps_eval.metrics.EpisodeTrace`
with the scenario's road query (drivable area; lane straddling / intersection for lateral
contacts) exactly like a closed-loop episode (:func:`tps_eval.trace.trace_from_log`); its
collision events are classified by :func:`tps_eval.metrics.classify_collision` (docs/METRICS.md,
"Collisions and fault"). Prints a table per scenario and every collision; exits 1 on an at-fault
collision or a failed reset (contacts the expert is not at fault for are listed, not failed).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tps_sim.episode_log import EpisodeLog, log_from_arrays

from tps_eval.metrics import CollisionEvent, EpisodeTrace, collision_events
from tps_eval.road import road_for_scenario
from tps_eval.seeds import SeedSet
from tps_eval.trace import trace_from_log

if TYPE_CHECKING:  # the world (libsumo) is imported where an episode runs
    from tps_sim.world.world import SimWorld

DEFAULT_SEEDS = "9000:9010"
DEFAULT_DURATION_S = 30.0
_NO_CONTROL = {"throttle": 0.0, "steer": 0.0, "brake": 0.0, "hand_brake": False, "reverse": False}


@dataclass(frozen=True)
class _StateFrame:
    """What :meth:`EpisodeLog.add` reads of a bridge frame, for a world stepped directly."""

    step: int
    t_s: float
    stamp_s: float
    state: object
    scene: object
    control: dict = field(default_factory=lambda: dict(_NO_CONTROL))
    events: tuple = ()
    light_states: object = None      # (L,) traffic-light states of the step (no scene needed)


class WorldEpisodeRecorder:
    """Records the states of a :class:`SimWorld` episode with the episode-log writer and scores
    them like a closed-loop episode (same log -> trace path, same taxonomy).

    Args:
        world: the world being stepped (its statics are read from the first state's scene).
        source: name of the episode in error messages.
    """

    def __init__(self, world: SimWorld, source: str) -> None:
        self.world = world
        self.source = source
        self.log = EpisodeLog()

    def add(self, state) -> None:  # noqa: ANN001 - a WorldState
        """Record one step."""
        scene = self.world.scene3d(state) if not self.log.rows else None
        self.log.add(_StateFrame(int(state.step), float(state.t_s), float(state.t_s), state, scene,
                                 events=tuple(getattr(state, "events", ()) or ()),
                                 light_states=self.world.light_states(state)),
                     control_received=False, step_timeout=False, wall_time_s=time.monotonic())

    def trace(self, scenario: str) -> EpisodeTrace:
        """The recorded episode as an :class:`EpisodeTrace` on the scenario's road."""
        cfg = self.world.config
        meta = {"scenario": scenario, "seed": cfg.seed, "dt_s": cfg.dt_s, "ego_driver": cfg.ego_driver}
        log = log_from_arrays(self.log.arrays(meta, np.asarray(self.world.route)), self.source)
        return trace_from_log(log, road_for_scenario(scenario), meta=meta)


@dataclass
class EpisodeResult:
    """Outcome of one expert episode.

    ``collision_kinds`` lists ``"<id>:<kind>:fault|no"`` per object contacted (kind from
    :func:`tps_eval.metrics.classify_collision`); ``collision_events`` the same as dicts.
    """

    scenario: str
    seed: int
    steps: int
    duration_s: float
    route_progress_m: float
    mean_speed_mps: float
    collision_steps: int
    collision_ids: list
    collision_kinds: list
    min_gap_m: float
    wall_s: float
    error: str = ""
    at_fault_collisions: int = 0
    collision_events: list = field(default_factory=list)
    off_road_steps: int = 0


def describe_events(events: list[CollisionEvent]) -> list[str]:
    """``"<id>:<kind>:fault|no"`` for each event."""
    return [f"{e.object_id}:{e.kind}:{'fault' if e.at_fault else 'no'}" for e in events]


def run_episode(scenario: str, seed: int, duration_s: float, density: float = 1.0,
                clutter: str = "none") -> EpisodeResult:
    """Run one expert episode and classify its collisions (see the module docstring)."""
    from tps_sim.world import SimWorld, WorldConfig

    t0 = time.perf_counter()
    world = SimWorld(WorldConfig(scenario=scenario, seed=seed, density=density, clutter=clutter,
                                 ego_driver="expert", duration_s=duration_s))
    try:
        try:
            state = world.reset()
        except RuntimeError as exc:  # e.g. SUMO refused to insert the ego
            return EpisodeResult(scenario, seed, 0, 0.0, 0.0, 0.0, 0, [], [], float("nan"),
                                 time.perf_counter() - t0, str(exc))
        recorder = WorldEpisodeRecorder(world, f"(expert check {scenario} seed {seed})")
        recorder.add(state)
        speeds = []
        min_gap = np.inf
        while not world.is_done(state):
            state = world.step()
            recorder.add(state)
            speeds.append(state.ego.speed_mps)
            if state.agents:
                d = np.hypot(*(np.array([a.center[:2] for a in state.agents])
                               - np.array(state.ego.center[:2])).T)
                min_gap = min(min_gap, float(d.min()))
        trace = recorder.trace(scenario)
        events = collision_events(trace)
        off_road = 0 if trace.drivable is None else int(
            np.count_nonzero(~np.asarray(trace.drivable, bool).all(axis=1)))
        return EpisodeResult(
            scenario, seed, state.step, state.t_s, state.route_progress_m,
            float(np.mean(speeds)) if speeds else 0.0,
            sum(1 for ids in trace.collision_ids if ids), sorted({e.object_id for e in events}),
            describe_events(events), float(min_gap), time.perf_counter() - t0,
            at_fault_collisions=sum(1 for e in events if e.at_fault),
            collision_events=[asdict(e) for e in events], off_road_steps=off_road)
    finally:
        world.close()


def run_expert_check(scenarios: list, seeds: list, duration_s: float, density: float = 1.0,
                     progress: bool = True) -> list:
    """Every (scenario, seed) episode; returns EpisodeResults."""
    from tqdm import tqdm

    jobs = [(sc, sd) for sc in scenarios for sd in seeds]
    return [run_episode(sc, sd, duration_s, density)
            for sc, sd in tqdm(jobs, desc="expert check", unit="episode", disable=not progress)]


def summary_table(results: list) -> str:
    """Markdown table: per scenario episodes, failed resets, episodes with a collision (any /
    at fault), collision steps, off-road steps, mean progress and speed."""
    rows = ["| scenario | episodes | failed resets | episodes with collision | with at-fault "
            "collision | collision steps | off-road steps | mean progress [m] | mean speed [m/s] |",
            "|---|---|---|---|---|---|---|---|---|"]
    for sc in dict.fromkeys(r.scenario for r in results):
        rs = [r for r in results if r.scenario == sc]
        rows.append(f"| {sc} | {len(rs)} | {sum(1 for r in rs if r.error)} | "
                    f"{sum(1 for r in rs if r.collision_ids)} | "
                    f"{sum(1 for r in rs if r.at_fault_collisions)} | "
                    f"{sum(r.collision_steps for r in rs)} | "
                    f"{sum(r.off_road_steps for r in rs)} | "
                    f"{np.mean([r.route_progress_m for r in rs]):.1f} | "
                    f"{np.mean([r.mean_speed_mps for r in rs]):.1f} |")
    return "\n".join(rows)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``tps-eval expert-check``."""
    from tps_eval import seeds as S

    S.add_arguments(ap, default=f"{DEFAULT_SEEDS}, the first ten TEST seeds")
    ap.add_argument("--scenarios", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="episode length [s]")
    ap.add_argument("--density", type=float, default=1.0, help="traffic density (WorldConfig)")
    ap.add_argument("--json", default="", help="write {seeds, episodes} here")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, seeds: SeedSet) -> int:
    """``tps-eval expert-check``: 1 on an at-fault collision or a failed reset, else 0."""
    from tps_sim.world import SCENARIOS

    names = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; expected some of {sorted(SCENARIOS)}")
    print(f"expert check: {len(names)} scenarios x seeds {seeds.describe()}, "
          f"{args.duration:g} s, density {args.density:g}", flush=True)
    t0 = time.monotonic()
    results = run_expert_check(names, list(seeds.seeds), args.duration, args.density,
                               progress=not args.quiet)
    print(summary_table(results))
    for r in results:
        if r.collision_ids:
            print(f"COLLISION {r.scenario} seed {r.seed}: {r.collision_kinds}")
        if r.error:
            print(f"RESET FAILED {r.scenario} seed {r.seed}: {r.error}")
    n_fault = sum(1 for r in results if r.at_fault_collisions)
    n_any = sum(1 for r in results if r.collision_ids)
    n_err = sum(1 for r in results if r.error)
    print(f"{len(results)} episodes: {n_any} with a collision, {n_fault} with an at-fault "
          f"collision, {n_err} failed resets ({time.monotonic() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"seeds": seeds.to_dict(), "duration_s": args.duration,
                       "density": args.density, "scenarios": names,
                       "episodes": [asdict(r) for r in results]}, f, indent=1, default=float)
    return 1 if (n_fault or n_err) else 0
