"""Node parameters: one JSON schema per node, validated at start-up.

A schema lives in ``config/schema/<node>.schema.json``::

    {"node": "fallback_node",
     "parameters": {
        "max_speed_mps": {"type": "number", "unit": "m/s", "default": 13.9,
                          "minimum": 0.0, "maximum": 40.0, "description": "cruise speed cap"},
        "backend": {"type": "string", "default": "auto", "enum": ["auto", "onnxruntime", "torch"]}}}

Supported ``type`` values: number, integer, string, boolean, number_array, string_array.
``minimum``/``maximum`` are inclusive; ``exclusiveMinimum``/``exclusiveMaximum`` are strict.
A bad value raises :class:`ParameterError` naming the parameter and the allowed range, so a node
refuses to start with a message a person can act on.

This module never imports rclpy: :func:`declare_from_schema` takes the node duck-typed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

_TYPES = {"number", "integer", "string", "boolean", "number_array", "string_array"}


class ParameterError(ValueError):
    """A node parameter is missing, of the wrong type or out of its allowed range."""


def config_dir() -> Path:
    """The repository's ``config/`` folder (``TPS_CONFIG_DIR`` overrides)."""
    env = os.environ.get("TPS_CONFIG_DIR")
    if env:
        return Path(env)
    root = os.environ.get("TPS_ROOT")
    if root:
        return Path(root) / "config"
    # ros2_ws/src/tps_inference/tps_inference/params.py -> repository root
    return Path(__file__).resolve().parents[4] / "config"


def load_schema(node_or_path: str | os.PathLike) -> dict:
    """Load a schema by node name (``config/schema/<node>.schema.json``) or by path."""
    path = Path(node_or_path)
    if path.suffix != ".json":
        path = config_dir() / "schema" / f"{node_or_path}.schema.json"
    try:
        schema = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ParameterError(f"parameter schema not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise ParameterError(f"parameter schema {path} is not valid JSON: {exc}") from exc
    for name, spec in schema.get("parameters", {}).items():
        if spec.get("type") not in _TYPES:
            raise ParameterError(f"schema {path}: parameter '{name}' has unknown type {spec.get('type')!r}")
    return schema


def _range_text(spec: dict) -> str:
    lo = spec.get("minimum", spec.get("exclusiveMinimum"))
    hi = spec.get("maximum", spec.get("exclusiveMaximum"))
    lb = "[" if "minimum" in spec else "("
    rb = "]" if "maximum" in spec else ")"
    unit = f" {spec['unit']}" if spec.get("unit") else ""
    if lo is None and hi is None:
        return ""
    return f"{lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}{unit}"


def _check_number(name: str, value: Any, spec: dict) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"parameter '{name}' must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ParameterError(f"parameter '{name}' must be finite, got {value!r}")
    bad = (
        ("minimum" in spec and value < spec["minimum"])
        or ("maximum" in spec and value > spec["maximum"])
        or ("exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"])
        or ("exclusiveMaximum" in spec and value >= spec["exclusiveMaximum"])
    )
    if bad:
        raise ParameterError(f"parameter '{name}' = {value} is out of range; allowed {_range_text(spec)}")
    return value


def validate_value(name: str, value: Any, spec: dict) -> Any:
    """Check one value against its schema entry; return it (ints widened to float for numbers)."""
    kind = spec["type"]
    if kind == "number":
        value = float(_check_number(name, value, spec))
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"parameter '{name}' must be an integer, got {value!r}")
        _check_number(name, value, spec)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ParameterError(f"parameter '{name}' must be true or false, got {value!r}")
    elif kind == "string":
        if not isinstance(value, str):
            raise ParameterError(f"parameter '{name}' must be a string, got {value!r}")
    elif kind == "number_array":
        if not isinstance(value, (list, tuple)):
            raise ParameterError(f"parameter '{name}' must be a list of numbers, got {value!r}")
        value = [float(_check_number(f"{name}[{i}]", v, spec)) for i, v in enumerate(value)]
    elif kind == "string_array":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ParameterError(f"parameter '{name}' must be a list of strings, got {value!r}")
        value = list(value)
    if "enum" in spec and value not in spec["enum"]:
        raise ParameterError(f"parameter '{name}' = {value!r} is not one of {spec['enum']}")
    if kind in ("number_array", "string_array") and "length" in spec and len(value) != spec["length"]:
        raise ParameterError(f"parameter '{name}' must have {spec['length']} elements, got {len(value)}")
    return value


def validate(values: dict, schema: dict, *, allow_unknown: bool = False) -> dict:
    """Validate ``values`` against ``schema``; fill defaults; return a new dict.

    Raises:
        ParameterError: naming the first bad, missing or (unless ``allow_unknown``) unknown parameter.
    """
    specs = schema.get("parameters", {})
    if not allow_unknown:
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {unknown} for {schema.get('node', 'node')}; known: {sorted(specs)}"
            )
    out = {}
    for name, spec in specs.items():
        if name in values and values[name] is not None:
            out[name] = validate_value(name, values[name], spec)
        elif "default" in spec:
            out[name] = validate_value(name, spec["default"], spec)
        else:
            raise ParameterError(f"parameter '{name}' is required ({spec.get('description', '')})")
    return out


def declare_from_schema(node, schema: dict) -> dict:
    """Declare every schema parameter on an rclpy ``node`` (default from the schema), read the
    values it was started with (parameter files, overrides), validate them, and return a dict.

    Raises:
        ParameterError: naming the parameter, so the node fails at start-up with a clear message.
    """
    values = {}
    for name, spec in schema.get("parameters", {}).items():
        default = spec.get("default")
        if default is None:
            # rclpy needs a type for parameters without a default.
            from rclpy.parameter import Parameter  # local: this module stays importable without rclpy

            ptype = {
                "number": Parameter.Type.DOUBLE,
                "integer": Parameter.Type.INTEGER,
                "string": Parameter.Type.STRING,
                "boolean": Parameter.Type.BOOL,
                "number_array": Parameter.Type.DOUBLE_ARRAY,
                "string_array": Parameter.Type.STRING_ARRAY,
            }[spec["type"]]
            node.declare_parameter(name, ptype)
        elif spec["type"] == "number":
            # Dynamic typing: a parameter file that writes `10` for a double must not be refused
            # by rclpy's type check; validate() below checks (and widens) the value instead.
            from rcl_interfaces.msg import ParameterDescriptor  # local, as above

            node.declare_parameter(name, float(default), ParameterDescriptor(dynamic_typing=True))
        else:
            node.declare_parameter(name, default)
        value = node.get_parameter(name).value
        if spec["type"] == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    return validate(values, schema)
