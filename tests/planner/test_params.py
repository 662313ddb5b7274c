"""Parameter files and schemas of the tps_planner nodes: every core parameter is declared with
the core's default, the shipped param files validate, and bad values raise the specific error."""

import dataclasses

import pytest
import yaml
from tps_common.params import ParameterError, config_dir, load_schema, validate
from tps_planner.arbiter import ArbiterParams
from tps_planner.controller import ControllerParams
from tps_planner.fallback import FallbackParams

NODES = {"controller_node": ControllerParams, "fallback_node": FallbackParams,
         "trajectory_arbiter": ArbiterParams}


@pytest.mark.parametrize("node, params_cls", NODES.items())
def test_schema_covers_core_params_with_same_defaults(node, params_cls):
    specs = load_schema(node)["parameters"]
    for f in dataclasses.fields(params_cls):
        assert f.name in specs, f"{node}: core parameter {f.name} missing from the schema"
        assert specs[f.name]["default"] == f.default, f"{node}: default of {f.name} differs"
        assert specs[f.name].get("description"), f"{node}: {f.name} has no description"


@pytest.mark.parametrize("node", NODES)
def test_shipped_param_file_validates(node):
    data = yaml.safe_load((config_dir() / f"{node}.param.yaml").read_text())
    values = data["/**"]["ros__parameters"]
    validated = validate(values, load_schema(node))
    params_cls = NODES[node]
    names = {f.name for f in dataclasses.fields(params_cls)}
    params_cls(**{k: v for k, v in validated.items() if k in names})   # the core accepts them


@pytest.mark.parametrize("node, name, value, message", [
    ("trajectory_arbiter", "watchdog_timeout_s", -0.1, "'watchdog_timeout_s' = -0.1 is out of range"),
    ("trajectory_arbiter", "blend_window_s", "long", "'blend_window_s' must be a number"),
    ("controller_node", "lateral_mode", "mpc", "'lateral_mode' = 'mpc' is not one of"),
    ("controller_node", "max_wheel_angle_rad", 0.0, "'max_wheel_angle_rad' = 0.0 is out of range"),
    ("fallback_node", "comfort_decel_mps2", 20.0, "'comfort_decel_mps2' = 20.0 is out of range"),
    ("fallback_node", "ignore_obstacles", "yes", "'ignore_obstacles' must be true or false"),
    ("fallback_node", "min_obstacle_points", 1.5, "'min_obstacle_points' must be an integer"),
    ("fallback_node", "no_such_parameter", 1.0, "unknown parameter(s) ['no_such_parameter']"),
])
def test_bad_values_raise_parameter_error_naming_them(node, name, value, message):
    with pytest.raises(ParameterError) as exc:
        validate({name: value}, load_schema(node))
    assert message in str(exc.value)


def test_core_cross_checks():
    with pytest.raises(ValueError, match="lookahead_max_m must be >= lookahead_min_m"):
        ControllerParams(lookahead_min_m=10.0, lookahead_max_m=5.0)
