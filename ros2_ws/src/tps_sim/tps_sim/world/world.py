"""SimWorld: SUMO traffic + the project's ego model + clutter, stepped at a fixed dt.

Typical use::

    cfg = WorldConfig(scenario="merge", seed=3, ego_driver="external")
    world = SimWorld(cfg)
    state = world.reset()
    while not world.is_done(state):
        state = world.step(EgoControl(throttle=0.3))
    world.close()

Episode timeline: SUMO starts at its time 0 with the scenario's flows, runs ``warmup_s`` so the
roads are populated, then the ego (and any adversary) is inserted; the first step in which the
ego exists is the episode's t = 0 (``reset()``'s state). In "external" mode the ego is our
kinematic bicycle model (``ego_model``), pushed into SUMO each step with moveToXY(keepRoute=2)
+ setSpeed with SUMO's own speed / lane-change logic switched off for it, so background traffic
perceives and reacts to it. In "expert" mode SUMO drives the ego along the route (the
rule-based expert). For a ~50-vehicle benchmark use ``scenario="highway", density=1.15`` (BENCHMARK_SCENARIO,
BENCHMARK_DENSITY).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from tps_common.geometry import box_corners, boxes_overlap, wrap_angle

from tps_sim.world.clutter import concat_statics, place_clutter, place_obstacles
from tps_sim.world.config import ConfigError, EgoControl, Instruction, WorldConfig
from tps_sim.world.ego_model import EgoModel, EgoModelParams, EgoModelState
from tps_sim.world.networks import (
    ADVERSARY_TYPE,
    EGO_HEIGHT_M,
    EGO_LENGTH_M,
    EGO_TYPE,
    EGO_WIDTH_M,
    OBSTACLE_TYPE,
    STALLED_TYPE,
    build_network,
    flows_file,
    vtypes_file,
)
from tps_sim.world.road import RoadGeometry
from tps_sim.world.route import RouteTracker, route_polyline
from tps_sim.world.scenarios import SCENARIOS, Scenario, resolve_instruction
from tps_sim.world.signals import build_layout
from tps_sim.world.state import EGO_ID, STATIC_ID_BASE, AgentState, StaticObjects, WorldState
from tps_sim.world.sumo_adapter import (
    CLASS_CAR,
    NetworkData,
    SumoError,
    SumoSim,
    read_network,
)

EGO_SIM_ID = "ego"
BLOCKER_PREFIX = "obst_"  # SUMO placeholders of in-lane obstacles (reported as statics)
ADV_PREFIX = "adv_"
ROUTE_END_MARGIN_M = 5.0
EGO_INSERT_TRIES = 6
CLEAR_BEHIND_M = 80.0
CLEAR_AHEAD_M = 80.0
CLEAR_ANY_LANE_M = 12.0
# An in-lane obstacle closer than the ego's stopping distance makes SUMO refuse to insert the ego
# (no secure gap). The ego then starts at a speed it can stop from with this deceleration, short
# of the obstacle by OBSTACLE_START_MARGIN_M.
OBSTACLE_START_DECEL_MPS2 = 3.0
OBSTACLE_START_MARGIN_M = 15.0
ADV_CLEAR_AHEAD_M = 200.0
CUT_IN_TTC_S = 1.5
LEAD_BRAKE_DECEL_MPS2 = 7.5  # the hard_brake lead's deceleration (WorldConfig.adversary overrides)
# Lane departure (the external ego driven off every lane): SUMO keeps its ego off the network
# (moveToXY free placement, no lane) while our ego model drives on; every step with a footprint
# corner off the drivable area carries EVENT_OFF_DRIVABLE (DAC 0), and once the whole footprint
# has been off the drivable area for more than OFF_ROAD_END_S the episode ends with
# END_OFF_ROAD: nothing on a road is left to score by then (NC / DAC / TLC are decided, progress
# no longer grows), and a short excursion (a cut corner, a wheel on the shoulder) can still
# recover and keep being scored.
EVENT_OFF_DRIVABLE = "off_drivable"
END_OFF_ROAD = "off_road"
OFF_ROAD_END_S = 2.0
BENCHMARK_SCENARIO = "highway"
BENCHMARK_DENSITY = 1.15


class SimWorld:
    """The closed-loop world of one WorldConfig. See the module docstring.

    Attributes:
        config: the validated configuration.
        scenario: the Scenario entry.
        route: (N, 2) float64 ego route centreline [m, map].
        instruction: the episode's Instruction (the scenario's own unless WorldConfig.instruction
            picks one of its variants).
        instruction_variant: the InstructionVariant picked, or None.
        lane_change_done: for an instructed lane change, (t [s], from lane, to lane) once the
            expert was told to change (None before, or without one).
        road: RoadGeometry of the network.
        ego_params: EgoModelParams of the ego.
    """

    def __init__(self, config: WorldConfig, ego_params: EgoModelParams | None = None) -> None:
        config.validate()
        self.config = config
        self.scenario: Scenario = SCENARIOS[config.scenario]
        self.ego_params = ego_params or EgoModelParams(
            length_m=EGO_LENGTH_M, width_m=EGO_WIDTH_M, height_m=EGO_HEIGHT_M)
        self._net_path = str(build_network(self.scenario.network))
        self._net = read_network(self._net_path)
        self.road = RoadGeometry.from_network(self._net)
        self.route = route_polyline(self._net, self.scenario.ego_edges,
                                    self.scenario.ego_depart_lane)
        # The episode's instruction (WorldConfig.instruction; the expert executes it) and, for an
        # instructed lane change, when the expert starts it [s after t = 0].
        self.instruction: Instruction
        self.instruction, self.instruction_variant, self._lane_change_at_s = resolve_instruction(
            self.scenario, config.instruction, config.seed)
        # Route arc length of the ego's nominal start (the route starts at the beginning of
        # the ego's first edge); obstacles are placed relative to it.
        self.start_s_m = float(min(self.scenario.ego_depart_pos_m, len(self.route) - 1.0))
        self._sim = SumoSim(self._net.offset)
        self._road_surface = None
        # Traffic lights (heads, poles, arms; tps_sim.world.signals): fixed per network.
        self.light_layout = build_layout(self._net, self.road)
        self._light_boxes = None
        self._reset_episode_fields()

    def _reset_episode_fields(self) -> None:
        self._ids: dict = {}
        self._next_id = 1
        self._prev_yaw: dict = {}
        self._step = 0
        self._t0 = 0.0
        self._statics = StaticObjects.empty()
        self._ego_model: EgoModel | None = None
        self._tracker = RouteTracker(self.route)
        self._last_ego: AgentState | None = None
        self._adv: dict = {}
        self._rng = np.random.default_rng(0)
        self._done_reason = ""
        self._off_road_steps = 0
        self._blockers: dict = {}
        self._blocker_ids: set = set()
        self._blocker_pos: dict = {}
        self.lane_change_done: tuple | None = None

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> WorldState:
        """Start (or restart) SUMO with the seed, populate traffic, insert the ego; state at
        t = 0. Raises RuntimeError if SUMO refuses to insert the ego."""
        self.close()
        self._reset_episode_fields()
        cfg, sc = self.config, self.scenario
        self._rng = np.random.default_rng([cfg.seed, zlib.crc32(sc.name.encode())])
        self._sim.start(self._net_path, [str(flows_file(sc, cfg.density))],
                        [str(vtypes_file())], cfg.seed, cfg.dt_s, sc.extra_sumo_args)
        warmup_s = sc.warmup_s if sc.warmup_s is not None else cfg.warmup_s
        statics = place_clutter(self.road, self.route, cfg.clutter, self._rng)
        obstacles = place_obstacles(self.route, cfg.obstacles, STATIC_ID_BASE + len(statics),
                                    self.start_s_m)
        self._statics = concat_statics(statics, obstacles)
        if sc.adversary == "stalled":
            self._setup_stalled()
        self._setup_obstacle_blockers(obstacles)
        for _ in range(int(round(warmup_s / cfg.dt_s))):
            self._sim.step()
            self._hold_stalled()
        if sc.random_signal_phase:
            self._randomise_signal_phases()
        self._insert_ego()
        self._t0 = self._sim.time_s()
        self._ids = {EGO_SIM_ID: EGO_ID}
        ego = self._read_ego()
        if cfg.ego_driver == "external":
            self._ego_model = EgoModel(self.ego_params, EgoModelState(
                ego.center[0], ego.center[1], ego.yaw, ego.speed_mps))
        return self._build_state(ego, ())

    def close(self) -> None:
        """Stop SUMO (libsumo.close()); reset() may be called again afterwards."""
        self._sim.close()

    def __enter__(self) -> SimWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _randomise_signal_phases(self) -> None:
        """Start every traffic light in a seeded random phase with a random part of it left, so
        that the seeds of a scenario meet the lights in different states."""
        for tls in sorted(set(self.light_layout.tls_ids)):
            durations = self._sim.traffic_light_phases(tls)
            phase = int(self._rng.integers(len(durations)))
            remaining = float(self._rng.uniform(0.5, max(durations[phase], 0.5)))
            self._sim.set_traffic_light_phase(tls, phase, round(remaining, 1))

    # ------------------------------------------------------------------ stepping
    def step(self, control: EgoControl | None = None) -> WorldState:
        """Advance one dt. ``control`` drives the ego model (ignored in expert mode). A bad
        control (NaN, out of range) is clipped/replaced and reported in ``state.events``."""
        if not self._sim.running:
            raise RuntimeError("SimWorld.step() before reset() (or after close())")
        events: list = []
        ego_state = None
        if self.config.ego_driver == "external":
            control = control if control is not None else EgoControl()
            fixed, problems = control.sanitized()
            if problems:
                events.append("bad_control: " + "; ".join(problems))
            s = self._ego_model.update(fixed, self.config.dt_s)
            if self._sim.has_vehicle(EGO_SIM_ID):
                try:
                    self._sim.move_to(EGO_SIM_ID, (s.x_m, s.y_m), s.yaw_rad,
                                      self.ego_params.length_m, abs(s.speed_mps))
                except SumoError as exc:
                    events.append(f"ego_placement_failed: {exc}")
        self._script_adversary()
        self._execute_instruction()
        self._sim.step()
        self._hold_stalled()
        self._step += 1
        if self.config.ego_driver == "external":
            ego_state = self._model_ego_state()
            if not self._sim.has_vehicle(EGO_SIM_ID):
                events.append("ego_left_sumo")
        elif self._sim.has_vehicle(EGO_SIM_ID):
            ego_state = self._read_ego()
        else:
            events.append("ego_arrived")
            self._done_reason = "ego_arrived"
            ego_state = self._last_ego
        self._check_drivable(ego_state, events)
        return self._build_state(ego_state, tuple(events))

    def _check_drivable(self, ego: AgentState, events: list) -> None:
        """Lane departure bookkeeping (see OFF_ROAD_END_S): EVENT_OFF_DRIVABLE when a footprint
        corner is off the drivable area; END_OFF_ROAD once the whole footprint has been off it
        for more than OFF_ROAD_END_S."""
        corners = box_corners(np.asarray(ego.center[:2], np.float64)[None], np.array([ego.yaw]),
                              np.array([ego.size[0]]), np.array([ego.size[1]]))[0]
        on = self.road.contains(corners)
        if not on.all():
            events.append(EVENT_OFF_DRIVABLE)
        self._off_road_steps = 0 if on.any() else self._off_road_steps + 1
        if self._off_road_steps * self.config.dt_s > OFF_ROAD_END_S + 1e-9 and not self._done_reason:
            self._done_reason = END_OFF_ROAD

    def is_done(self, state: WorldState) -> bool:
        """True when the duration has elapsed, the route end is reached, the expert ego
        left the simulation or the ego has been off the road too long (:attr:`done_reason`)."""
        if state.t_s >= self.config.duration_s - 1e-9:
            return True
        if state.route_progress_m >= self._tracker.length_m - ROUTE_END_MARGIN_M:
            return True
        return bool(self._done_reason)

    @property
    def done_reason(self) -> str:
        """Why the world ended the episode by itself: "" (not, or by duration / route end),
        "ego_arrived" (expert) or END_OFF_ROAD."""
        return self._done_reason

    @property
    def network(self) -> NetworkData:
        """The scenario's road network (map frame), e.g. for the map knowledge
        (``tps_sim.map_knowledge``)."""
        return self._net

    @property
    def route_length_m(self) -> float:
        """Length of the route polyline [m]."""
        return self._tracker.length_m

    @property
    def ego_model_state(self) -> EgoModelState | None:
        """The ego model's state (external mode), else None."""
        return self._ego_model.state if self._ego_model else None

    def sumo_ego_center(self) -> np.ndarray | None:
        """Where SUMO has the ego (box centre, map frame), for placement checks."""
        if not self._sim.has_vehicle(EGO_SIM_ID):
            return None
        return self._sim.read_vehicles((EGO_SIM_ID,)).centers[0]

    # ------------------------------------------------------------------ ego insertion
    def _insert_ego(self) -> None:
        sc, sim = self.scenario, self._sim
        first = sc.ego_edges[0]
        lane = sc.ego_depart_lane
        sim.add_route("ego_route", list(sc.ego_edges))
        cap, nearest = self._obstacle_start_speed_cap()
        for attempt in range(EGO_INSERT_TRIES):
            # SUMO refuses an insertion that a follower could not brake for: try the planned
            # speed, then the lane's desired speed, moving forward a little each time. With an
            # in-lane obstacle ahead, the retries start slower instead, where it can stop.
            capped = cap is not None and attempt > 0
            pos = sc.ego_depart_pos_m + (0.0 if capped else 5.0 * attempt)
            speed = min(sc.ego_depart_speed_mps, cap * 0.8 ** (attempt - 1)) if capped else sc.ego_depart_speed_mps
            depart_speed = "desired" if (attempt % 2 and not capped) else f"{speed:.2f}"
            self._clear_around(first, lane, pos, CLEAR_ANY_LANE_M + 20.0 * attempt)
            sim.add_vehicle(EGO_SIM_ID, "ego_route", EGO_TYPE, str(lane), f"{pos:.2f}",
                            depart_speed)
            sim.step()
            if sim.has_vehicle(EGO_SIM_ID):
                self.insert_attempts = attempt + 1
                if self.config.ego_driver == "external":
                    sim.hand_over(EGO_SIM_ID)
                else:
                    if sc.ego_lc_mode is not None:
                        sim.set_lane_change_mode(EGO_SIM_ID, sc.ego_lc_mode)
                    v = self.instruction_variant
                    if v is not None and v.target_speed_mps > 0.0:
                        sim.set_max_speed(EGO_SIM_ID, v.target_speed_mps)
                self._insert_adversary()
                return
            sim.remove_vehicle(EGO_SIM_ID)
        hint = ""
        if nearest is not None:
            k, s_m = nearest
            hint = (f"; in-lane obstacles[{k}].route_s_m = {s_m:g} m is the nearest obstacle ahead of the "
                    f"ego's start: move it farther along the route")
        raise RuntimeError(f"SUMO refused to insert the ego on {first}_{lane} after "
                           f"{EGO_INSERT_TRIES} tries (scenario {sc.name}, seed "
                           f"{self.config.seed}){hint}")

    def _execute_instruction(self) -> None:
        """The expert's instructed lane change: once, at its seeded time, one lane to the side
        (SUMO's lane-change model waits for a safe gap; the lane-change mode then keeps it there).
        A change that the road does not allow (no lane on that side) is not made and is recorded as
        ``lane_change_done`` with the same lane on both sides."""
        if (self._lane_change_at_s is None or self.lane_change_done is not None or self.config.ego_driver != "expert"
                or not self._sim.has_vehicle(EGO_SIM_ID)):
            return
        t = self._sim.time_s() - self._t0
        if t + 1e-9 < self._lane_change_at_s:
            return
        edge, lane, _ = self._sim.lane_position(EGO_SIM_ID)
        target = lane + int(self.instruction_variant.lane_change)
        try:
            n_lanes = self._net.lane(f"{edge}_{lane}").num_lanes_on_edge
        except KeyError:   # on a junction's internal lane: try again next step
            return
        if not 0 <= target < n_lanes:
            self.lane_change_done = (t, lane, lane)
            return
        remaining = max(self.config.duration_s - t, 1.0)
        self._sim.change_lane(EGO_SIM_ID, target, remaining, ignore_safety=False)
        self.lane_change_done = (t, lane, target)

    def _obstacle_start_speed_cap(self) -> tuple[float | None, tuple[int, float] | None]:
        """(speed cap m/s or None, (index, route_s_m) of the nearest in-lane obstacle or None):
        the ego's start speed from which it stops OBSTACLE_START_MARGIN_M short of the nearest
        obstacle that SUMO treats as blocking a lane (one with a placeholder vehicle)."""
        indices = [int(vid[len(BLOCKER_PREFIX):]) for vid in self._blocker_pos]  # vid = obst_<k>
        if not indices:
            return None, None
        s_m, k = min((float(self.config.obstacles[i]["route_s_m"]), i) for i in indices)
        room = max(0.0, s_m - OBSTACLE_START_MARGIN_M)
        return float(np.sqrt(2.0 * OBSTACLE_START_DECEL_MPS2 * room)), (k, s_m)

    def _clear_around(self, edge: str, lane: int, pos: float, any_lane_m: float) -> None:
        """Remove background vehicles from the ego's start: its lane 80 m behind to 80 m ahead
        (or up to a stalled vehicle), and every lane within ``any_lane_m`` (vehicles merging
        into the ego's lane also make SUMO refuse the insertion; each retry widens this)."""
        keep = {v for v in self._adv.values() if isinstance(v, str)} | self._blocker_ids
        ahead = CLEAR_AHEAD_M
        if "stalled_pos_m" in self._adv:
            # Keep the approach to the stalled vehicle free (the queue behind it would block
            # the ego's insertion); the stalled vehicle itself stays.
            ahead = max(ahead, self._adv["stalled_pos_m"] - pos - 1.0)
        for b_edge, b_lane, b_pos in self._blocker_pos.values():
            if b_edge == edge and b_lane == lane and b_pos > pos:
                ahead = max(ahead, b_pos - pos - 1.0)  # the queue behind an obstacle
        doomed = set(self._sim.vehicles_near(edge, lane, pos - CLEAR_BEHIND_M, pos + ahead))
        doomed |= set(self._sim.vehicles_near(edge, None, pos - any_lane_m, pos + any_lane_m))
        for vid in sorted(doomed - keep):
            self._sim.remove_vehicle(vid)

    # ------------------------------------------------------------------ adversaries
    def _setup_stalled(self) -> None:
        sc = self.scenario
        gap = self._adv_param("gap_m", float(self._rng.uniform(130.0, 190.0)))
        vid = ADV_PREFIX + "stalled"
        self._sim.add_route("stalled_route", list(sc.ego_edges))
        self._sim.add_vehicle(vid, "stalled_route", STALLED_TYPE, str(sc.ego_depart_lane),
                              f"{sc.ego_depart_pos_m + gap:.2f}", "0")
        self._adv = {"stalled": vid, "stalled_pos_m": sc.ego_depart_pos_m + gap}

    def _setup_obstacle_blockers(self, obstacles: StaticObjects) -> None:
        """A stopped placeholder SUMO vehicle (hidden from the agents) on the lane of each
        in-lane obstacle, so that traffic and the expert treat the lane as blocked."""
        self._blockers = {}
        self._blocker_ids = set()
        self._blocker_pos = {}
        for k in range(len(obstacles)):
            xy = obstacles.centers[k, :2]
            if not self.road.contains(xy[None])[0]:
                continue
            edge, pos, lane = self._sim.road_position(xy)
            if edge.startswith(":"):
                continue  # inside a junction: SUMO cannot park a vehicle there
            length = float(obstacles.sizes[k, 0])
            vid = f"{BLOCKER_PREFIX}{k}"
            self._sim.add_route(f"{vid}_route", [edge])
            self._sim.add_vehicle(vid, f"{vid}_route", OBSTACLE_TYPE, str(lane),
                                  f"{pos + 0.5 * length:.2f}", "0")
            self._blockers[vid] = tuple(obstacles.sizes[k])
            self._blocker_ids.add(vid)
            self._blocker_pos[vid] = (edge, lane, pos)

    def _hold_stalled(self) -> None:
        vid = self._adv.get("stalled")
        if vid and self._sim.has_vehicle(vid) and not self._adv.get("stalled_held"):
            self._sim.set_speed(vid, 0.0)
            self._sim.hand_over(vid)
            self._adv["stalled_held"] = True
        for vid, size in list(self._blockers.items()):
            if self._sim.has_vehicle(vid):
                self._sim.set_speed(vid, 0.0)
                self._sim.hand_over(vid)
                self._sim.set_size(vid, *size)
                del self._blockers[vid]

    def _insert_adversary(self) -> None:
        """Insert the scripted adversary relative to where the ego actually is (one extra
        step per try; the episode's t = 0 comes after it)."""
        kind = self.scenario.adversary
        if kind not in ("hard_brake", "cut_in"):
            return
        rng, sim = self._rng, self._sim
        # SUMO only inserts a vehicle where the ego (its follower) keeps a secure gap. The lead
        # (hard_brake) starts 45-65 m ahead and cruises at the speed limit like the ego, so the
        # expert has no reason to overtake; the cutter starts 40-60 m ahead in the lane to the
        # RIGHT of the ego (SUMO drivers do not overtake on the right), 3-6 m/s slower, and
        # cuts in when the gap has shrunk to 7-13 m (see _script_adversary).
        # The draws are made whether or not WorldConfig.adversary overrides them, so that an
        # override changes the adversary and nothing else of the seed's episode.
        gap = self._adv_param("gap_m", float(rng.uniform(45.0, 65.0) if kind == "hard_brake"
                                             else rng.uniform(40.0, 60.0)))
        ego_speed = self._ego_speed()
        adv_speed = ego_speed if kind == "hard_brake" else max(
            ego_speed - self._adv_param("speed_delta_mps", float(rng.uniform(3.0, 6.0))), 5.0)
        vid = ADV_PREFIX + ("lead" if kind == "hard_brake" else "cutter")
        sim.add_route("adv_route", list(self.scenario.ego_edges))
        for attempt in range(EGO_INSERT_TRIES):
            edge, ego_lane, ego_pos = sim.lane_position(EGO_SIM_ID)
            lane = ego_lane if kind == "hard_brake" else (ego_lane - 1 if ego_lane > 0
                                                          else ego_lane + 1)
            pos = ego_pos + gap + 15.0 * attempt
            # Free the adversary's lane around it and the ego's lane ahead, so that the ego
            # closes in on the adversary rather than queueing behind background traffic.
            doomed = set(sim.vehicles_near(edge, lane, pos - 60.0, pos + 80.0))
            doomed |= set(sim.vehicles_near(edge, ego_lane, ego_pos, pos + ADV_CLEAR_AHEAD_M))
            # Fast vehicles between the ego and the adversary (in any lane: they may be changing
            # into its lane) would need a longer secure gap than they have, and SUMO refuses
            # the insertion: remove them too (before t = 0, so no one vanishes on record).
            reach = 15.0 + 10.0 * attempt
            doomed |= set(sim.vehicles_near(edge, None, ego_pos + 1.0, pos + reach))
            for other in sorted(doomed - {EGO_SIM_ID} - self._blocker_ids):
                sim.remove_vehicle(other)
            sim.add_vehicle(vid, "adv_route", ADVERSARY_TYPE, str(lane), f"{pos:.2f}",
                            f"{adv_speed:.2f}")
            sim.step()
            if sim.has_vehicle(vid):
                break
            sim.remove_vehicle(vid)
        else:
            raise RuntimeError(f"SUMO refused to insert the {kind} adversary (scenario "
                               f"{self.scenario.name}, seed {self.config.seed})")
        if kind == "hard_brake":
            self._adv.update(lead=vid,
                             brake_at_s=self._adv_param("brake_at_s", float(rng.uniform(3.0, 6.0))),
                             brake_decel=self._adv_param("brake_decel_mps2", LEAD_BRAKE_DECEL_MPS2),
                             cruise=-1.0, hold_s=self._adv_param("hold_s", 3.0), phase="cruise")
        else:
            self._adv.update(cutter=vid,
                             cut_gap_m=self._adv_param("cut_gap_m", float(rng.uniform(7.0, 13.0))),
                             adv_speed=adv_speed, phase="approach")

    def _adv_param(self, name: str, drawn: float) -> float:
        """The adversary parameter ``name``: WorldConfig.adversary's override, else ``drawn``."""
        value = self.config.adversary.get(name)
        return drawn if value is None else float(value)

    def _script_adversary(self) -> None:
        kind = self.scenario.adversary
        sim = self._sim
        t = self._sim.time_s() - self._t0
        if kind in ("hard_brake", "cut_in") and not self._adv:
            return
        if kind == "hard_brake":
            vid = self._adv["lead"]
            if not sim.has_vehicle(vid):
                return
            if self._adv["phase"] == "cruise":
                sim.change_lane(vid, sim.lane_position(vid)[1], 1000.0)  # stay in lane
                sim.set_speed(vid, self._adv["cruise"])
                self._adv["phase"] = "wait"
            elif self._adv["phase"] == "wait" and t >= self._adv["brake_at_s"]:
                v = max(sim.read_vehicles((vid,)).speeds[0], 0.1)
                decel = self._adv["brake_decel"]
                sim.slow_down(vid, 0.0, v / decel)
                self._adv.update(phase="braking", stop_t=t + v / decel)
            elif self._adv["phase"] == "braking" and t >= self._adv["stop_t"]:
                sim.set_speed(vid, 0.0)
                self._adv["phase"] = "stopped"
            elif self._adv["phase"] == "stopped" and t >= self._adv["stop_t"] + self._adv["hold_s"]:
                sim.set_speed(vid, -1.0)
                self._adv["phase"] = "done"
        elif kind == "cut_in":
            vid = self._adv["cutter"]
            if not sim.has_vehicle(vid) or self._adv["phase"] == "done":
                return
            if self._adv["phase"] == "approach":
                sim.change_lane(vid, sim.lane_position(vid)[1], 1000.0)
                sim.set_speed(vid, self._adv["adv_speed"])
                self._adv["phase"] = "wait"
                return
            if not sim.has_vehicle(EGO_SIM_ID):
                return
            gap = self._gap_to(vid)
            _, adv_lane, _ = sim.lane_position(vid)
            _, ego_lane, _ = sim.lane_position(EGO_SIM_ID)
            # Cut in at 7-13 m plus CUT_IN_TTC_S of closing speed: aggressive, but leaves the
            # ego room to brake (a fixed 7 m gap at 11 m/s closing speed is unavoidable).
            closing = max(self._ego_speed() - self._adv["adv_speed"], 0.0)
            trigger = self._adv["cut_gap_m"] + CUT_IN_TTC_S * closing
            if gap <= trigger and abs(adv_lane - ego_lane) == 1 and gap > 2.0:
                sim.change_lane(vid, ego_lane, 1000.0)
                self._adv["phase"] = "done"

    def _ego_speed(self) -> float:
        return float(self._sim.read_vehicles((EGO_SIM_ID,)).speeds[0])

    def _gap_to(self, vid: str) -> float:
        """Bumper-to-bumper gap [m] along the route from the ego to vehicle ``vid``."""
        raw = self._sim.read_vehicles((vid, EGO_SIM_ID))
        s_adv, _ = self._tracker.project(raw.centers[0], windowed=False)
        s_ego, _ = self._tracker.project(raw.centers[1], windowed=False)
        return (s_adv - 0.5 * raw.sizes[0, 0]) - (s_ego + 0.5 * raw.sizes[1, 0])

    # ------------------------------------------------------------------ state building
    def _read_ego(self) -> AgentState:
        raw = self._sim.read_vehicles((EGO_SIM_ID,))
        return self._agent_from_raw(raw, 0, EGO_ID, CLASS_CAR)

    def _model_ego_state(self) -> AgentState:
        s, p = self._ego_model.state, self.ego_params
        return AgentState(
            id=EGO_ID, sim_id=EGO_SIM_ID, class_id=CLASS_CAR,
            center=(s.x_m, s.y_m, 0.5 * p.height_m), yaw=s.yaw_rad,
            size=(p.length_m, p.width_m, p.height_m),
            velocity=(s.speed_mps * math.cos(s.yaw_rad), s.speed_mps * math.sin(s.yaw_rad)),
            speed_mps=s.speed_mps, accel_mps2=s.accel_mps2, yaw_rate=s.yaw_rate_radps)

    def _agent_from_raw(self, raw, i: int, agent_id: int, class_id: int) -> AgentState:  # noqa: ANN001
        yaw = float(raw.yaws[i])
        v, lat = float(raw.speeds[i]), float(raw.lateral_speeds[i])
        c, s = math.cos(yaw), math.sin(yaw)
        prev = self._prev_yaw.get(agent_id)
        yaw_rate = 0.0 if prev is None else wrap_angle(yaw - prev, include_pi=True) / self.config.dt_s
        self._prev_yaw[agent_id] = yaw
        size = raw.sizes[i]
        return AgentState(
            id=agent_id, sim_id=raw.sim_ids[i], class_id=int(class_id),
            center=(float(raw.centers[i, 0]), float(raw.centers[i, 1]), 0.5 * float(size[2])),
            yaw=yaw, size=(float(size[0]), float(size[1]), float(size[2])),
            velocity=(v * c - lat * s, v * s + lat * c), speed_mps=v,
            accel_mps2=float(raw.accels[i]), yaw_rate=yaw_rate)

    def _agent_id(self, sim_id: str) -> int:
        aid = self._ids.get(sim_id)
        if aid is None:
            aid = self._next_id
            self._ids[sim_id] = aid
            self._next_id += 1
        return aid

    def _build_state(self, ego: AgentState, events: tuple) -> WorldState:
        agents = []
        for raw, prefix in ((self._sim.read_vehicles(), ""), (self._sim.read_persons(), "p:")):
            for i, sid in enumerate(raw.sim_ids):
                if sid == EGO_SIM_ID or sid.startswith(BLOCKER_PREFIX):
                    continue
                key = prefix + sid
                agents.append(self._agent_from_raw(raw, i, self._agent_id(key),
                                                   int(raw.class_ids[i])))
        agents.sort(key=lambda a: a.id)
        self._last_ego = ego
        ego_box = ego.box2d()
        boxes = np.array([a.box2d() for a in agents]).reshape(-1, 5)
        hit_agents = boxes_overlap(ego_box, boxes)
        hit_statics = boxes_overlap(ego_box, self._statics.boxes2d())
        collisions = tuple(int(agents[k].id) for k in np.flatnonzero(hit_agents)) + tuple(
            int(self._statics.ids[k]) for k in np.flatnonzero(hit_statics))
        if self._step == 0:  # first fix: search the whole route, then track in a window
            self._tracker.progress_m, _ = self._tracker.project(np.asarray(ego.center[:2]),
                                                                windowed=False)
        progress = self._tracker.update(np.asarray(ego.center[:2]))
        return WorldState(
            t_s=round(self._sim.time_s() - self._t0, 9), step=self._step, ego=ego,
            agents=tuple(agents), statics=self._statics, collisions=collisions,
            route_progress_m=progress, traffic_lights=self._sim.traffic_light_states(),
            events=events)

    # ------------------------------------------------------------------ sensors
    def scene3d(self, state: WorldState):  # noqa: ANN201 - tps_sim.sensors.scene3d.Scene3D
        """The 3D scene of ``state`` for the sensor models (agents, statics, road, ego pose)."""
        from tps_sim.sensors import scene3d as s3d

        if self._road_surface is None:
            self._road_surface = s3d.RoadSurface(self.road.drivable_polygons(),
                                                 self.road.marking_polylines(),
                                                 marking_areas=self.road.marking_areas())
        arr = state.agent_arrays()
        agents = s3d.BoxSet(arr["ids"], arr["centers"], arr["sizes"], arr["yaws"],
                            arr["class_ids"].astype(np.int16))
        st = state.statics
        name_to_mat = {v: k for k, v in s3d.MATERIAL_NAMES.items()}
        statics = s3d.BoxSet(st.ids, st.centers, st.sizes, st.yaws,
                             np.array([name_to_mat[k] for k in st.kinds], np.int16))
        e = state.ego
        return s3d.Scene3D(agents=agents, statics=statics, road=self._road_surface,
                           ego_pose=(e.center[0], e.center[1], e.yaw), ego_size=e.size,
                           time_s=state.t_s, lights=self.light_scene(state))

    # ------------------------------------------------------------------ traffic lights
    @property
    def light_heads(self) -> tuple:
        """The network's traffic-light heads (``tps_common.traffic_lights.LightHead``, ids
        1..K; empty without lights)."""
        return self.light_layout.heads

    def light_states(self, state: WorldState) -> np.ndarray:
        """(K,) uint8 state of every head at ``state`` (tps_common.traffic_lights constants)."""
        return self.light_layout.states(state.traffic_lights)

    def light_scene(self, state: WorldState):  # noqa: ANN201 - scene3d.LightScene | None
        """The traffic lights of ``state`` for the sensors (None without lights)."""
        from tps_sim.sensors import scene3d as s3d

        layout = self.light_layout
        if not len(layout):
            return None
        if self._light_boxes is None:
            n = layout.centers.shape[0]
            self._light_boxes = s3d.BoxSet(s3d.SIGNAL_ID_BASE + np.arange(n), layout.centers,
                                           layout.sizes, layout.yaws, layout.materials)
        return s3d.LightScene(layout.heads, self.light_states(state), self._light_boxes,
                              layout.housing_rows)


__all__ = ["SimWorld", "ConfigError", "BENCHMARK_SCENARIO", "BENCHMARK_DENSITY"]
