"""Build (and cache) SUMO networks, vehicle types and flow files for a scenario."""

from __future__ import annotations

from pathlib import Path

from tps_sim.world.cache import cached_dir, cached_file, content_key
from tps_sim.world.scenarios import NETCONVERT_COMMON, NetSpec, Scenario
from tps_sim.world.sumo_adapter import run_netconvert

NET_FILE = "net.net.xml"
CACHE_FORMAT = "v1"

# Vehicle types: sizes [m], speeds [m/s], accelerations [m/s^2]. Heights are per class so the
# 3D boxes are right. The ego's expert type has the same geometry as the ego model.
EGO_TYPE = "ego"
EGO_LENGTH_M, EGO_WIDTH_M, EGO_HEIGHT_M = 4.6, 1.9, 1.5
ADVERSARY_TYPE = "adversary"
STALLED_TYPE = "stalled"
OBSTACLE_TYPE = "obstacle"

# SUMO turns a vehicle by atan(lateral / longitudinal speed) during a lane change: bound the
# lateral speed by the forward speed (observed to work) and ask for none at standstill (not
# honoured by SUMO 1.28's continuous lane changes; sumo_adapter bounds the heading instead).
LCLAT = 'lcMaxSpeedLatStanding="0" lcMaxSpeedLatFactor="0.3"'

VTYPES_XML = f"""<additional>
  <vType id="{EGO_TYPE}" vClass="passenger" {LCLAT} length="{EGO_LENGTH_M}" width="{EGO_WIDTH_M}"
         height="{EGO_HEIGHT_M}" minGap="2.5" accel="2.6" decel="4.5" emergencyDecel="9"
         sigma="0" tau="1.2" speedFactor="1" maxSpeed="40" lcSpeedGain="0.5"/>
  <vType id="{ADVERSARY_TYPE}" vClass="passenger" {LCLAT} length="4.5" width="1.85" height="1.5"
         minGap="2.0" accel="2.6" decel="7.5" emergencyDecel="9" sigma="0" speedFactor="1"/>
  <vType id="{STALLED_TYPE}" vClass="passenger" {LCLAT} length="4.5" width="1.85" height="1.5"
         minGap="2.0" accel="2.6" decel="4.5" sigma="0" speedFactor="1"/>
  <vType id="{OBSTACLE_TYPE}" vClass="passenger" {LCLAT} length="1.0" width="1.0" height="0.5"
         minGap="1.0" accel="1" decel="4.5" sigma="0" speedFactor="1" guiShape="passenger"/>
  <vTypeDistribution id="mix_highway">
    <vType id="car" vClass="passenger" {LCLAT} length="4.5" width="1.85" height="1.5" accel="2.6"
           decel="4.5" emergencyDecel="9" sigma="0.4" speedFactor="normc(1,0.08,0.8,1.2)"
           probability="0.78"/>
    <vType id="truck" vClass="truck" {LCLAT} length="12.0" width="2.5" height="3.4" accel="1.1"
           decel="4.0" emergencyDecel="7" sigma="0.3" maxSpeed="25" probability="0.12"/>
    <vType id="bus" vClass="bus" {LCLAT} length="12.0" width="2.55" height="3.1" accel="1.2"
           decel="4.0" emergencyDecel="7" sigma="0.3" maxSpeed="27" probability="0.05"/>
    <vType id="motorcycle" vClass="motorcycle" {LCLAT} length="2.2" width="0.9" height="1.5"
           accel="4.0" decel="6.0" emergencyDecel="9" sigma="0.4" probability="0.05"/>
  </vTypeDistribution>
  <vTypeDistribution id="mix_urban">
    <vType id="ucar" vClass="passenger" {LCLAT} length="4.4" width="1.8" height="1.5" accel="2.6"
           decel="4.5" emergencyDecel="9" sigma="0.5" speedFactor="normc(1,0.1,0.7,1.2)"
           probability="0.80"/>
    <vType id="utruck" vClass="delivery" {LCLAT} length="7.0" width="2.2" height="2.9" accel="1.5"
           decel="4.0" emergencyDecel="7" sigma="0.4" probability="0.07"/>
    <vType id="ubus" vClass="bus" {LCLAT} length="12.0" width="2.55" height="3.1" accel="1.2"
           decel="4.0" emergencyDecel="7" sigma="0.3" probability="0.04"/>
    <vType id="umotorcycle" vClass="motorcycle" {LCLAT} length="2.2" width="0.9" height="1.5"
           accel="4.0" decel="6.0" emergencyDecel="9" sigma="0.4" probability="0.05"/>
    <vType id="ubicycle" vClass="bicycle" {LCLAT} length="1.8" width="0.65" height="1.7" accel="1.2"
           decel="3.0" emergencyDecel="6" sigma="0.3" maxSpeed="6" probability="0.04"/>
  </vTypeDistribution>
  <vType id="ped" vClass="pedestrian" length="0.4" width="0.6" height="1.75" speedFactor="normc(1,0.1,0.7,1.3)"/>
</additional>
"""


def build_network(spec: NetSpec) -> Path:
    """Path of the network's .net.xml, building it with netconvert on first use (cached)."""
    opts = tuple(NETCONVERT_COMMON) + tuple(spec.options)
    key = content_key(CACHE_FORMAT, spec.nodes_xml, spec.edges_xml, spec.connections_xml,
                      " ".join(opts))

    def build(tmp: Path) -> None:
        (tmp / "net.nod.xml").write_text(spec.nodes_xml, encoding="utf-8")
        (tmp / "net.edg.xml").write_text(spec.edges_xml, encoding="utf-8")
        (tmp / "net.con.xml").write_text(spec.connections_xml, encoding="utf-8")
        run_netconvert(["--node-files", "net.nod.xml", "--edge-files", "net.edg.xml",
                        "--connection-files", "net.con.xml", "-o", NET_FILE, *opts], cwd=str(tmp))

    return cached_dir("networks", f"{spec.name}-{key}", build, NET_FILE) / NET_FILE


def vtypes_file() -> Path:
    """The shared vehicle-type additional file (cached)."""
    return cached_file("routes", "vtypes-" + content_key(VTYPES_XML), ".add.xml", VTYPES_XML)


FLOW_END_S = 100000.0


def flows_file(scenario: Scenario, density: float) -> Path:
    """A route file with the scenario's flows scaled by ``density`` (cached by content).

    Flows are Bernoulli insertions per second (SUMO ``probability``), so SUMO's ``--seed``
    decides the exact arrival times.
    """
    lines = ["<routes>"]
    for i, fl in enumerate(scenario.flows):
        p = fl.vph * density / 3600.0
        if p <= 0.0:
            continue
        lines.append(f'  <route id="fr{i}" edges="{" ".join(fl.edges)}"/>')
        lines.append(f'  <flow id="f{i}" type="{fl.vtype}" route="fr{i}" begin="0" '
                     f'end="{FLOW_END_S}" probability="{min(p, 1.0):.6f}" '
                     f'departLane="{fl.depart_lane}" departSpeed="{fl.depart_speed}"/>')
    for i, pf in enumerate(scenario.person_flows):
        p = pf.pph * density / 3600.0
        if p <= 0.0:
            continue
        lines.append(f'  <personFlow id="p{i}" type="ped" begin="0" end="{FLOW_END_S}" '
                     f'probability="{min(p, 1.0):.6f}">')
        lines.append(f'    <walk edges="{" ".join(pf.edges)}"/>')
        lines.append("  </personFlow>")
    lines.append("</routes>")
    text = "\n".join(lines) + "\n"
    return cached_file("routes", f"{scenario.name}-{content_key(text)}", ".rou.xml", text)
