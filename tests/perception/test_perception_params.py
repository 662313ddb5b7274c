"""perception_node parameters: the shipped YAML validates against the schema; bad values are
refused with an error naming the parameter."""

from __future__ import annotations

import pytest
import yaml
from perception_helpers import REPO
from tps_common.params import ParameterError, load_schema, validate

SCHEMA = load_schema("perception_node")


def test_param_file_matches_schema():
    values = yaml.safe_load((REPO / "config" / "perception_node.param.yaml").read_text())["/**"]["ros__parameters"]
    out = validate(values, SCHEMA)
    assert out["model_name"] == "detector_int8" and out["expected_frame"] == "ego_vehicle/lidar"
    assert set(values) == set(SCHEMA["parameters"]), "param file and schema list different parameters"


@pytest.mark.parametrize("name, value", [
    ("fault_drop_rate", 1.5), ("score_threshold", -0.1), ("processing_budget_ms", 0.0), ("backend", "cuda"),
    ("model_name", "yolo"), ("threads", 0),
])
def test_bad_values_name_the_parameter(name, value):
    with pytest.raises(ParameterError, match=name):
        validate({name: value}, SCHEMA)
