"""Node parameters: one JSON schema per node, validated at start-up, described to ROS.

A schema lives in ``config/schema/<node>.schema.json``::

    {"node": "fallback_node",
     "parameters": {
        "max_speed_mps": {"type": "number", "unit": "m/s", "default": 13.9,
                          "minimum": 0.0, "maximum": 40.0, "description": "cruise speed cap"},
        "backend": {"type": "string", "default": "auto", "enum": ["auto", "onnxruntime", "torch"]}}}

Supported ``type`` values: number, integer, string, boolean, number_array, string_array.
``minimum``/``maximum`` are inclusive; ``exclusiveMinimum``/``exclusiveMaximum`` are strict.
``"read_only": false`` marks a parameter a node re-reads at run time (none do today; every
parameter is read-only by default). A bad value raises :class:`ParameterError` naming the parameter
and the allowed range, so a node refuses to start with a message a person can act on.
:func:`declare_from_schema` also gives rclpy a ``ParameterDescriptor`` per parameter (description
with unit and range, numeric range, read-only), so ``ros2 param describe`` shows them and
``ros2 param set`` of a read-only parameter is refused.

The module imports rclpy only inside :func:`declare_from_schema` / :func:`parameter_descriptor`, so
validation works in any virtualenv.
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
    # ros2_ws/src/tps_common/tps_common/params.py -> repository root
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


# rclpy's integer range bounds (int64) for schemas with only one bound.
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def describe(name: str, spec: dict) -> str:
    """One line for ``ros2 param describe``: the schema description, unit, range or choices."""
    parts = [spec.get("description", "").strip() or name]
    if spec.get("unit"):
        parts.append(f"unit: {spec['unit']}")
    rng = _range_text(spec)
    if rng:
        parts.append(f"range: {rng}")
    if "enum" in spec:
        parts.append(f"one of {spec['enum']}")
    if "length" in spec:
        parts.append(f"{spec['length']} elements")
    return "; ".join(parts)


def parameter_descriptor(name: str, spec: dict):
    """The ``rcl_interfaces/ParameterDescriptor`` of a schema entry: description (with unit and
    range), type, numeric range (inclusive; exclusive bounds are enforced by :func:`validate`),
    ``read_only`` (every parameter unless the schema says ``"read_only": false``: nodes read their
    parameters once at start-up, so a runtime ``set`` must be refused, not silently ignored) and
    dynamic typing for numbers (a parameter file may write ``10`` for a double)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    kind = spec["type"]
    ptype = {
        "number": ParameterType.PARAMETER_DOUBLE,
        "integer": ParameterType.PARAMETER_INTEGER,
        "string": ParameterType.PARAMETER_STRING,
        "boolean": ParameterType.PARAMETER_BOOL,
        "number_array": ParameterType.PARAMETER_DOUBLE_ARRAY,
        "string_array": ParameterType.PARAMETER_STRING_ARRAY,
    }[kind]
    desc = ParameterDescriptor(name=name, type=ptype, description=describe(name, spec),
                               read_only=bool(spec.get("read_only", True)))
    lo = spec.get("minimum", spec.get("exclusiveMinimum"))
    hi = spec.get("maximum", spec.get("exclusiveMaximum"))
    if kind == "number":
        desc.dynamic_typing = True
        if lo is not None or hi is not None:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float("-inf") if lo is None else float(lo),
                to_value=float("inf") if hi is None else float(hi), step=0.0)]
    elif kind == "integer" and (lo is not None or hi is not None):
        desc.integer_range = [IntegerRange(from_value=_INT64_MIN if lo is None else int(lo),
                                           to_value=_INT64_MAX if hi is None else int(hi), step=0)]
    if "enum" in spec:
        desc.additional_constraints = f"one of {spec['enum']}"
    return desc


def declare_from_schema(node, schema: dict) -> dict:
    """Declare every schema parameter on an rclpy ``node`` with its descriptor
    (:func:`parameter_descriptor`: description, range, read-only), read the values it was started
    with (parameter files, overrides), validate them, and return a dict.

    Raises:
        ParameterError: an override names a parameter the schema does not know (rclpy would
            silently ignore it), or a value is missing, of the wrong type or out of range --
            naming the parameter, so the node fails at start-up with a message a person can act on.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    specs = schema.get("parameters", {})
    overrides = dict(getattr(node, "_parameter_overrides", {}) or {})
    unknown = sorted(set(overrides) - set(specs) - {"use_sim_time"})
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown} for {schema.get('node', node.get_name())}; "
                             f"known: {sorted(specs)}")
    values = {}
    for name, spec in specs.items():
        default = spec.get("default")
        desc = parameter_descriptor(name, spec)
        try:
            if default is None:
                # rclpy needs a type for parameters without a default.
                node.declare_parameter(name, Parameter.Type(desc.type), desc)
            else:
                node.declare_parameter(name, float(default) if spec["type"] == "number" else default, desc)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            # rclpy's own range/type check fired first: say it in the schema's words.
            raw = overrides[name].value if name in overrides else default
            validate_value(name, raw, spec)
            raise ParameterError(f"parameter '{name}' = {raw!r} refused: {exc}") from exc
        value = node.get_parameter(name).value
        if spec["type"] == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    return validate(values, schema)
