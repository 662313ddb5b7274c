"""The scenario library: road networks (plain XML -> netconvert), traffic, ego route, instruction.

Every scenario is data: a network (nodes / edges / connections in SUMO's plain-XML format, built
with netconvert at first use and cached), vehicle and pedestrian flows (vehicles per hour at
density 1.0), the ego's route and start, a DrivingInstruction, and optionally an adversary that
the world scripts through the SUMO adapter (cut-in, hard-braking lead, stalled vehicle).
Coordinates in the XML are the map frame (x east, y north) before netconvert's offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tps_sim.world.config import (
    CMD_CHANGE_LANE_LEFT,
    CMD_CHANGE_LANE_RIGHT,
    CMD_FOLLOW_LANE,
    CMD_GO_STRAIGHT,
    CMD_TAKE_EXIT,
    CMD_TURN_LEFT,
    CMD_TURN_RIGHT,
    Instruction,
)

NETCONVERT_COMMON = ("--no-turnarounds", "true", "--junctions.corner-detail", "8",
                     "--default.junctions.radius", "8")


@dataclass(frozen=True)
class NetSpec:
    """Plain-XML network description (map-frame coordinates) plus extra netconvert options."""

    name: str
    nodes_xml: str
    edges_xml: str
    connections_xml: str = "<connections/>"
    options: tuple = ()


@dataclass(frozen=True)
class Flow:
    """A vehicle flow along a route at ``vph`` vehicles per hour (density 1.0)."""

    edges: tuple
    vph: float
    vtype: str = "mix_highway"
    depart_lane: str = "best"
    depart_speed: str = "max"


@dataclass(frozen=True)
class InstructionVariant:
    """An instruction a scenario may be given in an episode instead of its own
    (``WorldConfig.instruction``), and what the expert does to execute it.

    The ego's route is the same for every variant (the departure lane's centreline on the
    highway), so the route never decides what the instruction decides: only the instruction tells
    "change lane left" from "keep lane".

    Attributes:
        key: the ``WorldConfig.instruction`` value that selects it, e.g. "change_lane_left".
        texts: its wordings; the first for an explicit key, a seeded pick for "seeded".
        command: one of the CMD_* constants.
        exit_number: 1-based exit for CMD_TAKE_EXIT, else 0.
        target_speed_mps: requested cruise speed [m/s] (< 0: none); the expert's maximum speed
            becomes it.
        lane_change: +1 (left) / -1 (right): the expert changes one lane, once, a seeded
            ``LANE_CHANGE_AT_S`` after t = 0 (SUMO waits for a safe gap); 0: none.
    """

    key: str
    texts: tuple
    command: int
    exit_number: int = 0
    target_speed_mps: float = -1.0
    lane_change: int = 0

    def instruction(self, text: str | None = None) -> Instruction:
        return Instruction(text or self.texts[0], self.command, self.exit_number, self.target_speed_mps)


@dataclass(frozen=True)
class PersonFlow:
    """A pedestrian flow walking ``edges`` at ``pph`` persons per hour (density 1.0)."""

    edges: tuple
    pph: float


@dataclass(frozen=True)
class Scenario:
    """One entry of the scenario library (see module docstring)."""

    name: str
    family: str
    description: str
    network: NetSpec
    ego_edges: tuple
    ego_depart_lane: int
    ego_depart_pos_m: float
    ego_depart_speed_mps: float
    instruction: Instruction
    flows: tuple = ()
    person_flows: tuple = ()
    adversary: str = ""  # "", "cut_in", "hard_brake", "stalled"
    warmup_s: float | None = None  # overrides WorldConfig.warmup_s when set
    extra_sumo_args: tuple = field(default_factory=tuple)
    ego_lc_mode: int | None = None  # SUMO lane-change mode of the expert ego (None: SUMO's)
    random_signal_phase: bool = False  # traffic lights start in a seeded random phase
    # Instructions an episode may get instead of ``instruction`` (WorldConfig.instruction):
    # "seeded" picks one per seed, a key picks that one. Empty: the instruction is fixed.
    instruction_variants: tuple = ()

    def variant_keys(self) -> list[str]:
        return [v.key for v in self.instruction_variants]

    def instruction_problem(self, choice: object) -> str | None:
        """Why ``choice`` is not an instruction choice of this scenario ("" = its own, "seeded",
        or one of its variant keys), or None when it is. The one check behind WorldConfig, the
        bridge's parameters and :func:`resolve_instruction`."""
        if isinstance(choice, str) and choice in ("", "seeded", *self.variant_keys()):
            return None
        return (f"{choice!r} is not an instruction of scenario {self.name!r}; expected '' (its own), "
                f"'seeded' or one of {self.variant_keys()}")


# WorldConfig.instruction values besides a variant key: "" = the scenario's own instruction,
# "seeded" = a seeded pick among its variants (the scenario's own where it has none).
INSTRUCTION_FIXED = ""
INSTRUCTION_SEEDED = "seeded"
# When the expert starts an instructed lane change: uniform in this window after t = 0 [s]; the
# first frames already carry the instruction, so the expert's 4-s plan shows the change coming.
LANE_CHANGE_AT_S = (1.0, 4.0)
_INSTRUCTION_STREAM = 0x1A57   # the instruction's own random stream (the seed's other draws unchanged)


def resolve_instruction(scenario: Scenario, choice: str, seed: int) -> tuple[Instruction, InstructionVariant | None,
                                                                            float | None]:
    """(instruction, variant or None, lane-change time [s after t = 0] or None) of an episode.

    Raises:
        ValueError: ``choice`` is neither "", "seeded" nor one of the scenario's variant keys.
    """
    import zlib

    import numpy as np

    if choice == INSTRUCTION_FIXED or (choice == INSTRUCTION_SEEDED and not scenario.instruction_variants):
        return scenario.instruction, None, None
    rng = np.random.default_rng([int(seed), zlib.crc32(scenario.name.encode()), _INSTRUCTION_STREAM])
    if choice == INSTRUCTION_SEEDED:
        variant = scenario.instruction_variants[int(rng.integers(len(scenario.instruction_variants)))]
        text = variant.texts[int(rng.integers(len(variant.texts)))]
    else:
        problem = scenario.instruction_problem(choice)
        if problem is not None:
            raise ValueError(f"instruction: {problem}")
        variant = next(v for v in scenario.instruction_variants if v.key == choice)
        text = variant.texts[0]
    at_s = float(rng.uniform(*LANE_CHANGE_AT_S)) if variant.lane_change else None
    return variant.instruction(text), variant, at_s


# ------------------------------------------------------------------ networks

def _nodes(*rows: tuple) -> str:
    """rows: (id, x, y[, type])."""
    out = ["<nodes>"]
    for r in rows:
        t = f' type="{r[3]}"' if len(r) > 3 else ""
        out.append(f'  <node id="{r[0]}" x="{r[1]:.2f}" y="{r[2]:.2f}"{t}/>')
    out.append("</nodes>")
    return "\n".join(out)


def _edges(*rows: dict, extra: str = "") -> str:
    out = ["<edges>"]
    for r in rows:
        attrs = " ".join(f'{k}="{v}"' for k, v in r.items())
        out.append(f"  <edge {attrs}/>")
    if extra:
        out.append(extra)
    out.append("</edges>")
    return "\n".join(out)


HIGHWAY_SPEED_MPS = 27.78
URBAN_SPEED_MPS = 13.89


def highway_net() -> NetSpec:
    """Straight 3-lane one-way carriageway, 1.6 km, split at x = 700 m."""
    return NetSpec(
        "highway3",
        _nodes(("hA", 0, 0), ("hB", 700, 0), ("hC", 1600, 0)),
        _edges({"id": "hw0", "from": "hA", "to": "hB", "numLanes": 3,
                "speed": HIGHWAY_SPEED_MPS, "spreadType": "center"},
               {"id": "hw1", "from": "hB", "to": "hC", "numLanes": 3,
                "speed": HIGHWAY_SPEED_MPS, "spreadType": "center"}),
    )


def merge_net() -> NetSpec:
    """2-lane main road with a 1-lane on-ramp joining a 200 m acceleration lane."""
    nodes = _nodes(("m0", 0, 0), ("m1", 500, 0), ("m2", 700, 0), ("m3", 1500, 0),
                   ("r0", 300, -60))
    edges = _edges(
        {"id": "main0", "from": "m0", "to": "m1", "numLanes": 2, "speed": HIGHWAY_SPEED_MPS},
        {"id": "ramp", "from": "r0", "to": "m1", "numLanes": 1, "speed": 22.0},
        {"id": "accel", "from": "m1", "to": "m2", "numLanes": 3, "speed": HIGHWAY_SPEED_MPS},
        {"id": "main1", "from": "m2", "to": "m3", "numLanes": 2, "speed": HIGHWAY_SPEED_MPS},
    )
    conns = "\n".join([
        "<connections>",
        '  <connection from="main0" to="accel" fromLane="0" toLane="1"/>',
        '  <connection from="main0" to="accel" fromLane="1" toLane="2"/>',
        '  <connection from="ramp" to="accel" fromLane="0" toLane="0"/>',
        '  <connection from="accel" to="main1" fromLane="1" toLane="0"/>',
        '  <connection from="accel" to="main1" fromLane="2" toLane="1"/>',
        "</connections>",
    ])
    return NetSpec("merge", nodes, edges, conns)


def _arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 24) -> str:
    pts = []
    for k in range(n + 1):
        a = a0 + (a1 - a0) * k / n
        pts.append(f"{cx + r * math.cos(a):.2f},{cy + r * math.sin(a):.2f}")
    return " ".join(pts)


ROUNDABOUT_RADIUS_M = 28.0
ROUNDABOUT_ARM_M = 200.0
ROUNDABOUT_LANE_WIDTH_M = 4.0


def roundabout_net() -> NetSpec:
    """Two-lane roundabout (radius 28 m) with four two-lane arms of 200 m (counter-clockwise
    circulation, right-hand traffic)."""
    r, arm = ROUNDABOUT_RADIUS_M, ROUNDABOUT_ARM_M
    dirs = {"E": 0.0, "N": math.pi / 2, "W": math.pi, "S": -math.pi / 2}
    rows = []
    for k, a in dirs.items():
        rows.append((f"r{k}", r * math.cos(a), r * math.sin(a), "priority"))
        rows.append((f"o{k}", (r + arm) * math.cos(a), (r + arm) * math.sin(a)))
    order = ["S", "E", "N", "W"]  # counter-clockwise
    edges = []
    ring_ids = []
    for i, k in enumerate(order):
        nk = order[(i + 1) % 4]
        a0 = dirs[k]
        a1 = dirs[nk]
        if a1 <= a0:
            a1 += 2 * math.pi
        eid = f"ring_{k}{nk}"
        ring_ids.append(eid)
        # Circulating lanes 4 m wide (wider than the arms, as on real roundabouts): on 3.2 m
        # lanes a car exiting from the outer lane and one circulating on the inner lane
        # overlapped by a few centimetres on the curve (SUMO does not check that).
        edges.append({"id": eid, "from": f"r{k}", "to": f"r{nk}", "numLanes": 2, "speed": 9.0,
                      "shape": _arc(0, 0, r, a0, a1), "priority": 3,
                      "width": ROUNDABOUT_LANE_WIDTH_M})
    for k in order:
        edges.append({"id": f"in_{k}", "from": f"o{k}", "to": f"r{k}", "numLanes": 2,
                      "speed": URBAN_SPEED_MPS, "priority": 2})
        edges.append({"id": f"out_{k}", "from": f"r{k}", "to": f"o{k}", "numLanes": 2,
                      "speed": URBAN_SPEED_MPS, "priority": 2})
    extra = (f'  <roundabout nodes="{" ".join("r" + k for k in order)}" '
             f'edges="{" ".join(ring_ids)}"/>')
    # Lane-keeping connections: both circulating lanes may enter, continue and exit, so no
    # driver has to change lanes inside the ring to leave it (SUMO completes such lane
    # changes sideways even at standstill, rotating boxes into the neighbouring lane).
    conns = ["<connections>"]
    for i, k in enumerate(order):
        prev = order[(i - 1) % 4]
        nxt = order[(i + 1) % 4]
        for lane in (0, 1):
            conns.append(f'  <connection from="ring_{prev}{k}" to="out_{k}" fromLane="{lane}" '
                         f'toLane="{lane}"/>')
            conns.append(f'  <connection from="ring_{prev}{k}" to="ring_{k}{nxt}" '
                         f'fromLane="{lane}" toLane="{lane}"/>')
            conns.append(f'  <connection from="in_{k}" to="ring_{k}{nxt}" fromLane="{lane}" '
                         f'toLane="{lane}"/>')
    conns.append("</connections>")
    return NetSpec("roundabout2", _nodes(*rows), _edges(*edges, extra=extra), "\n".join(conns))


INTERSECTION_ARM_M = 200.0


def intersection_net(kind: str, green_s: float = 15.0, yellow_s: float = 3.0) -> NetSpec:
    """Four-arm intersection: ``kind`` "traffic_light" (2 lanes each way, signalised; SUMO's
    fixed-time program, ``green_s`` / ``yellow_s`` per phase) or "priority" (east-west main road
    has priority over the north-south minor road)."""
    arm = INTERSECTION_ARM_M
    dirs = {"E": (arm, 0), "N": (0, arm), "W": (-arm, 0), "S": (0, -arm)}
    rows = [("J", 0, 0, kind)] + [(f"o{k}", x, y) for k, (x, y) in dirs.items()]
    edges = []
    for k in dirs:
        main = k in ("E", "W")
        lanes = 2 if kind == "traffic_light" else 1
        prio = 2 if (main or kind == "traffic_light") else 1
        speed = URBAN_SPEED_MPS if main or kind == "traffic_light" else 11.0
        edges.append({"id": f"in_{k}", "from": f"o{k}", "to": "J", "numLanes": lanes,
                      "speed": speed, "priority": prio})
        edges.append({"id": f"out_{k}", "from": "J", "to": f"o{k}", "numLanes": lanes,
                      "speed": speed, "priority": prio})
    opts = ("--tls.green.time", f"{green_s:g}", "--tls.yellow.time", f"{yellow_s:g}") \
        if kind == "traffic_light" else ()
    name = f"x_{kind}" if (green_s, yellow_s) == (15.0, 3.0) else f"x_{kind}_g{green_s:g}y{yellow_s:g}"
    return NetSpec(name, _nodes(*rows), _edges(*edges), options=opts)


def crossing_net() -> NetSpec:
    """Two-way urban road (one lane each way plus sidewalks) with a zebra crossing at x = 250 m
    (pedestrians have priority), between two pedestrian-only side paths."""
    rows = [("pW", 0, 0), ("pC", 250, 0, "priority"), ("pE", 600, 0), ("pN", 250, 40),
            ("pS", 250, -40)]
    common = {"numLanes": 1, "speed": URBAN_SPEED_MPS, "sidewalkWidth": 2.0}
    foot = {"numLanes": 1, "speed": 2.0, "allow": "pedestrian", "width": 2.5}
    edges = [
        {"id": "WC", "from": "pW", "to": "pC", **common},
        {"id": "CW", "from": "pC", "to": "pW", **common},
        {"id": "CE", "from": "pC", "to": "pE", **common},
        {"id": "EC", "from": "pE", "to": "pC", **common},
        {"id": "NC", "from": "pN", "to": "pC", **foot},
        {"id": "CN", "from": "pC", "to": "pN", **foot},
        {"id": "SC", "from": "pS", "to": "pC", **foot},
        {"id": "CS", "from": "pC", "to": "pS", **foot},
    ]
    conns = "\n".join([
        "<connections>",
        '  <crossing node="pC" edges="WC CW" priority="true" width="4"/>',
        "</connections>",
    ])
    return NetSpec("ped_crossing", _nodes(*rows), _edges(*edges), conns,
                   options=("--walkingareas", "true"))


# ------------------------------------------------------------------ scenarios

HIGHWAY_WARMUP_S = 65.0  # long enough for traffic to fill the 1.6 km carriageway
KEEP_LANE = Instruction("keep lane", CMD_FOLLOW_LANE, 0, 25.0)
# The expert obeys "keep lane": SUMO's lane-change mode (setLaneChangeMode bitset) keeps only the
# strategic changes a route may need (bits 0-1 = 1), with none for cooperation, speed gain or
# keeping right (bits 2-7 = 0), and SUMO's defaults for the rest (bits 8-9 = 2, bits 10-11 = 1):
# 0b0110_0000_0001. Without it the expert changed lanes in 14 of 15 VAL keep-lane episodes
# (highway, cut-in, hard brake; seeds 1000-1004) while its lane-level route stayed in the
# departure lane, so the planner data labelled "keep lane" with a plan one lane (3.2 m) to the
# side. Setting the LC2013 parameters lcSpeedGain / lcKeepRight / lcCooperative to 0 instead
# left cut-in at 5 of 5 (the ego moved a lane left about 3 s in, as the slower cutter closed in
# on its right); the mode leaves 0 of 15.
KEEP_LANE_LC_MODE = 0b0110_0000_0001


# The highway's instructions (the ego starts in the middle of three lanes: both changes are
# possible). The requested speed is below the traffic's, so it shows in the expert's driving.
HIGHWAY_SLOW_MPS = 80.0 / 3.6
HIGHWAY_INSTRUCTIONS = (
    InstructionVariant("keep_lane", ("keep lane", "stay in your lane", "follow this lane"), CMD_FOLLOW_LANE,
                       target_speed_mps=25.0),
    InstructionVariant("change_lane_left", ("change lane left", "move over into the left lane",
                                            "switch to the lane on your left"), CMD_CHANGE_LANE_LEFT,
                       target_speed_mps=25.0, lane_change=+1),
    InstructionVariant("change_lane_right", ("change lane right", "move over into the right lane",
                                             "switch to the lane on your right"), CMD_CHANGE_LANE_RIGHT,
                       target_speed_mps=25.0, lane_change=-1),
    InstructionVariant("keep_lane_80", ("keep lane at 80 km/h", "stay in this lane and slow to 80",
                                        "hold your lane at eighty kilometres per hour"), CMD_FOLLOW_LANE,
                       target_speed_mps=HIGHWAY_SLOW_MPS),
)


def _highway_flows(vph_per_lane: float) -> tuple:
    return tuple(Flow(("hw0", "hw1"), vph_per_lane, "mix_highway", str(lane), "max")
                 for lane in range(3))


def _build() -> dict:
    hw = highway_net()
    sc = {}
    sc["highway"] = Scenario(
        "highway", "highway", "3-lane motorway, mixed traffic (cars, trucks, buses, motorcycles); "
        "keep lane", hw, ("hw0", "hw1"), 1, 120.0, 22.0, KEEP_LANE, _highway_flows(900.0),
        warmup_s=HIGHWAY_WARMUP_S, ego_lc_mode=KEEP_LANE_LC_MODE, instruction_variants=HIGHWAY_INSTRUCTIONS)
    sc["merge"] = Scenario(
        "merge", "merge", "ego on an on-ramp with a 200 m acceleration lane merges into 2-lane "
        "main-road traffic", merge_net(), ("ramp", "accel", "main1"), 0, 40.0, 16.0,
        Instruction("merge left onto the main road", CMD_CHANGE_LANE_LEFT, 0, 25.0),
        (Flow(("main0", "accel", "main1"), 1100.0, "mix_highway", "best", "max"),
         Flow(("ramp", "accel", "main1"), 250.0, "mix_highway", "best", "max")))
    ring = ("ring_SE", "ring_EN", "ring_NW", "ring_WS")
    rflows = []
    for i, k in enumerate(("S", "E", "N", "W")):
        for n_exit in (1, 2, 3):
            path = tuple(ring[(i + j) % 4] for j in range(n_exit))
            dest = ("S", "E", "N", "W")[(i + n_exit) % 4]
            rflows.append(Flow((f"in_{k}", *path, f"out_{dest}"), 110.0, "mix_urban", "best",
                               "max"))
    sc["roundabout"] = Scenario(
        "roundabout", "roundabout", "two-lane roundabout, four arms; ego enters from the south "
        "and takes the second exit (north)", roundabout_net(),
        ("in_S", "ring_SE", "ring_EN", "out_N"), 0, 60.0, 11.0,
        Instruction("take the second exit", CMD_TAKE_EXIT, 2, 9.0), tuple(rflows))
    sc["signalised"] = Scenario(
        "signalised", "intersection", "signalised four-arm intersection (2 lanes each way); ego "
        "from the south turns right", intersection_net("traffic_light"), ("in_S", "out_E"), 0,
        70.0, 12.0, Instruction("turn right at the lights", CMD_TURN_RIGHT, 0, 12.0),
        _intersection_flows(160.0))
    sc["lights"] = Scenario(
        "lights", "intersection", "signalised four-arm intersection with short light cycles "
        "(green 8 s, yellow 3 s), each seed meeting them in a random phase; ego from the south "
        "goes straight across", intersection_net("traffic_light", green_s=8.0, yellow_s=3.0),
        ("in_S", "out_N"), 0, 70.0, 12.0,
        Instruction("go straight at the lights", CMD_GO_STRAIGHT, 0, 12.0),
        _intersection_flows(160.0), random_signal_phase=True)
    sc["priority"] = Scenario(
        "priority", "intersection", "unsignalised priority junction: ego on the minor road turns "
        "left across the main road and must give way", intersection_net("priority"),
        ("in_S", "out_W"), 0, 80.0, 10.0,
        Instruction("turn left at the junction", CMD_TURN_LEFT, 0, 10.0),
        _intersection_flows(120.0, minor_scale=0.4))
    sc["cut_in"] = Scenario(
        "cut_in", "adversarial", "highway; a slower vehicle in the left lane cuts in closely in "
        "front of the ego", hw, ("hw0", "hw1"), 1, 120.0, 24.0, KEEP_LANE,
        _highway_flows(600.0), adversary="cut_in", warmup_s=HIGHWAY_WARMUP_S,
        ego_lc_mode=KEEP_LANE_LC_MODE)
    sc["hard_brake"] = Scenario(
        "hard_brake", "adversarial", "highway; the lead vehicle in the ego lane brakes hard "
        "(~7.5 m/s^2) to a stop", hw, ("hw0", "hw1"), 1, 120.0, 22.0, KEEP_LANE,
        _highway_flows(600.0), adversary="hard_brake", warmup_s=HIGHWAY_WARMUP_S,
        ego_lc_mode=KEEP_LANE_LC_MODE)
    sc["stalled"] = Scenario(
        "stalled", "adversarial", "highway; a stalled vehicle stands in the ego lane 130-190 m "
        "ahead", hw, ("hw0", "hw1"), 1, 120.0, 22.0,
        Instruction("follow the road", CMD_FOLLOW_LANE, 0, 25.0), _highway_flows(600.0),
        adversary="stalled", warmup_s=HIGHWAY_WARMUP_S)
    sc["ped_crossing"] = Scenario(
        "ped_crossing", "adversarial", "urban road with a zebra crossing; pedestrians cross in "
        "front of the ego", crossing_net(), ("WC", "CE"), 1, 90.0, 11.0,
        Instruction("go straight, give way to pedestrians at the crossing", CMD_GO_STRAIGHT, 0,
                    12.0),
        (Flow(("WC", "CE"), 300.0, "mix_urban", "best", "max"),
         Flow(("EC", "CW"), 300.0, "mix_urban", "best", "max")),
        (PersonFlow(("SC", "CN"), 200.0), PersonFlow(("NC", "CS"), 200.0)))
    return sc


def _intersection_flows(vph: float, minor_scale: float = 1.0) -> tuple:
    flows = []
    for k, (straight, left, right) in {"S": ("N", "W", "E"), "N": ("S", "E", "W"),
                                       "E": ("W", "S", "N"), "W": ("E", "N", "S")}.items():
        scale = minor_scale if k in ("N", "S") else 1.0
        for dest, share in ((straight, 0.6), (left, 0.2), (right, 0.2)):
            flows.append(Flow((f"in_{k}", f"out_{dest}"), vph * scale * share, "mix_urban",
                              "best", "max"))
    return tuple(flows)


SCENARIOS: dict = _build()
