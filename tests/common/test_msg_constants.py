"""Constants that ROS-free cores mirror from the interface files must equal the files.

Cores never import message packages (STYLE.md), so enum values from ``tps_msgs`` (and the
diagnostic levels) are copied into Python. This test reads the ``.msg`` files themselves and fails
when a copy drifts.
"""

import importlib
import re
from pathlib import Path

import pytest

MSG_DIR = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "tps_msgs" / "msg"
CONSTANT = re.compile(r"^\s*(u?int\d+|byte|char)\s+([A-Z][A-Z0-9_]*)\s*=\s*(-?\d+)")

# (python module, attribute or attribute[index], .msg file, constant)
MIRRORS = [
    *[("tps_planner.trajectory", f"SOURCE_{n}", "PlannedTrajectory", f"SOURCE_{n}")
      for n in ("PLANNER", "FALLBACK", "MINIMAL_RISK", "BLEND")],
    *[("tps_planner.trajectory", f"STATE_{n}", "MonitorStatus", f"STATE_{n}")
      for n in ("NOMINAL", "DEGRADED", "FALLBACK", "MINIMAL_RISK")],
    *[("tps_sim.world.config", f"CMD_{n}", "DrivingInstruction", m) for n, m in (
        ("FOLLOW_LANE", "FOLLOW_LANE"), ("TURN_LEFT", "TURN_LEFT"), ("TURN_RIGHT", "TURN_RIGHT"),
        ("GO_STRAIGHT", "GO_STRAIGHT"), ("CHANGE_LANE_LEFT", "CHANGE_LANE_LEFT"),
        ("CHANGE_LANE_RIGHT", "CHANGE_LANE_RIGHT"), ("STOP", "STOP"), ("TAKE_EXIT", "TAKE_EXIT"))],
    *[("tps_sim.sensors.scene3d", f"MAT_{n}", "DetectedAgent", f"CLASS_{n}")
      for n in ("CAR", "TRUCK", "BUS", "PEDESTRIAN", "CYCLIST")],
    *[("tps_perception.head_layout", f"CLASS_IDS[{i}]", "DetectedAgent", f"CLASS_{n}")
      for i, n in enumerate(("CAR", "TRUCK", "BUS", "PEDESTRIAN", "CYCLIST"))],
    *[(module, f"CONTROL_{n}", "MapStopLine", f"CONTROL_{n}")
      for module in ("tps_planner.lane_map", "tps_sim.map_knowledge")
      for n in ("NONE", "YIELD", "STOP", "TRAFFIC_LIGHT")],
    # Traffic-light states: tps_msgs/TrafficLightState and carla-ros-bridge's
    # CarlaTrafficLightStatus share the values the cores use.
    *[("tps_common.traffic_lights", n, msg, n) for n in ("RED", "YELLOW", "GREEN", "OFF", "UNKNOWN")
      for msg in ("TrafficLightState", "carla_msgs/CarlaTrafficLightStatus")],
    *[("tps_perception.traffic_light_reader", f"REASON_{n}", "TrafficLightState", f"REASON_{n}")
      for n in ("NONE", "OUT_OF_VIEW", "OUT_OF_RANGE", "TOO_SMALL", "NOT_FACING", "UNREADABLE",
                "NO_CALIBRATION")],
]


def msg_constants(name: str) -> dict[str, int]:
    """NAME -> value of the integer constants declared in ``tps_msgs/msg/<name>.msg`` (or
    ``<package>/msg/<Name>.msg`` for ``name`` = ``<package>/<Name>``)."""
    out = {}
    path = (MSG_DIR / f"{name}.msg" if "/" not in name
            else MSG_DIR.parents[1] / name.split("/")[0] / "msg" / f"{name.split('/')[1]}.msg")
    for line in path.read_text().splitlines():
        m = CONSTANT.match(line)
        if m:
            out[m.group(2)] = int(m.group(3))
    return out


def python_value(module: str, attr: str) -> int:
    m = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", attr)
    value = getattr(importlib.import_module(module), m.group(1))
    return int(value[int(m.group(2))]) if m.group(2) is not None else int(value)


@pytest.mark.parametrize("module, attr, msg, const", MIRRORS,
                         ids=[f"{m}.{a}" for m, a, _, _ in MIRRORS])
def test_mirrored_constant_equals_the_msg_file(module, attr, msg, const):
    declared = msg_constants(msg)
    assert const in declared, f"{msg}.msg declares no {const}"
    assert python_value(module, attr) == declared[const], f"{module}.{attr} != {msg}.{const}"


def test_parser_sees_every_constant_block():
    # A parser that silently finds nothing would make the test above vacuous.
    assert msg_constants("PlannedTrajectory") == {"SOURCE_PLANNER": 0, "SOURCE_FALLBACK": 1,
                                                  "SOURCE_MINIMAL_RISK": 2, "SOURCE_BLEND": 3}
    assert len(msg_constants("DrivingInstruction")) == 8


def test_health_levels_equal_diagnostic_status():
    from diagnostic_msgs.msg import DiagnosticStatus
    from tps_common import levels

    for name in ("OK", "WARN", "ERROR", "STALE"):
        assert getattr(levels, name) == int.from_bytes(getattr(DiagnosticStatus, name), "little")
