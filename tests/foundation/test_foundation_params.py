"""tps_common.params: schema validation, and every shipped parameter file against its schema."""

from pathlib import Path

import pytest
import yaml
from tps_common.params import ParameterError, config_dir, declare_from_schema, load_schema, validate

SCHEMA = {
    "node": "demo",
    "parameters": {
        "speed_mps": {"type": "number", "default": 5.0, "minimum": 0.0, "maximum": 10.0, "unit": "m/s"},
        "beams": {"type": "integer", "default": 32, "exclusiveMinimum": 0},
        "backend": {"type": "string", "default": "auto", "enum": ["auto", "onnxruntime"]},
        "enabled": {"type": "boolean", "default": True},
        "gains": {"type": "number_array", "default": [1.0, 0.1], "length": 2},
        "frame": {"type": "string"},
    },
}


def test_defaults_fill_and_ints_widen_to_float():
    out = validate({"frame": "base_link", "speed_mps": 3}, SCHEMA)
    assert out["speed_mps"] == 3.0 and isinstance(out["speed_mps"], float)
    assert out["beams"] == 32 and out["backend"] == "auto" and out["gains"] == [1.0, 0.1]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"frame": "x", "speed_mps": 11.0}, "'speed_mps' = 11.0 is out of range; allowed [0.0, 10.0] m/s"),
        ({"frame": "x", "speed_mps": float("nan")}, "'speed_mps' must be finite"),
        ({"frame": "x", "beams": 0}, "'beams' = 0 is out of range"),
        ({"frame": "x", "beams": 3.5}, "'beams' must be an integer"),
        ({"frame": "x", "backend": "tensorflow"}, "'backend' = 'tensorflow' is not one of"),
        ({"frame": "x", "enabled": "yes"}, "'enabled' must be true or false"),
        ({"frame": "x", "gains": [1.0]}, "'gains' must have 2 elements"),
        ({}, "parameter 'frame' is required"),
        ({"frame": "x", "sped_mps": 1.0}, "unknown parameter(s) ['sped_mps']"),
    ],
)
def test_bad_values_name_the_parameter(values, needle):
    with pytest.raises(ParameterError) as err:
        validate(values, SCHEMA)
    assert needle in str(err.value)


def test_missing_schema_is_named(tmp_path):
    with pytest.raises(ParameterError, match="no_such_node.schema.json"):
        load_schema("no_such_node")


def _param_files():
    return sorted(p for p in config_dir().glob("*.param.yaml"))


def test_every_parameter_file_has_a_schema_and_validates():
    files = _param_files()
    assert files, f"no parameter files under {config_dir()}"
    for path in files:
        node = path.name.removesuffix(".param.yaml")
        schema = load_schema(node)
        doc = yaml.safe_load(path.read_text())
        assert set(doc) == {"/**"}, f"{path}: root must be '/**'"
        values = doc["/**"]["ros__parameters"]
        values.pop("use_sim_time", None)
        validate(values, schema)


def test_every_schema_entry_is_documented():
    for path in sorted((config_dir() / "schema").glob("*.schema.json")):
        schema = load_schema(path)
        for name, spec in schema["parameters"].items():
            assert spec.get("description"), f"{path.name}: parameter '{name}' has no description"


@pytest.mark.ros
def test_declare_from_schema_accepts_an_integer_for_a_double(tmp_path: Path):
    import rclpy
    from rclpy.node import Node

    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    speed_mps: 7\n    frame: base_link\n")
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("params_test", context=context, cli_args=["--ros-args", "--params-file", str(params)])
        out = declare_from_schema(node, SCHEMA)
        assert out["speed_mps"] == 7.0 and out["frame"] == "base_link"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
