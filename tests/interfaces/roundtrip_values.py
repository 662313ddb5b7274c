"""Deterministic, non-default values for every field of any ROS 2 message class, generated from
``get_fields_and_field_types()`` recursively (nested messages, sequences, bounded sequences,
fixed arrays, bounded strings).  Shared by the round-trip test and its publisher subprocess, which
both build the same message from the same type name."""

from __future__ import annotations

import array
import importlib
import inspect
import itertools
import re
from pathlib import Path
from typing import Any

SEQUENCE_LENGTH = 2  # elements put in every unbounded sequence
_SEQ_RE = re.compile(r"^sequence<(.+?)(?:,\s*(\d+))?>$")
_ARRAY_RE = re.compile(r"^(.+)\[(\d+)\]$")
_BSTRING_RE = re.compile(r"^(w?string)<=(\d+)$")
_FLOATS = {"float", "double", "long double"}
# Values chosen so every one differs from the default (0 / false / ""), fits its type, exercises
# the range (unsigned above the signed maximum, negative signed), and is exact in float32.
_INT_VALUE = {
    "int8": lambda k: -(k % 100) - 1,
    "uint8": lambda k: 128 + k % 100,
    "int16": lambda k: -1000 - k,
    "uint16": lambda k: 40000 + k,
    "int32": lambda k: -100000 - k,
    "uint32": lambda k: 3_000_000_000 + k,
    "int64": lambda k: -(2**40) - k,
    "uint64": lambda k: 2**63 + k,
}


def message_class(type_name: str) -> type:
    """``"geometry_msgs/Point"`` -> the rclpy message class."""
    pkg, _, name = type_name.partition("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def message_classes(package: str) -> dict[str, type]:
    """Every message class of an installed interface package, by name."""
    module = importlib.import_module(f"{package}.msg")
    return {
        name: cls
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if hasattr(cls, "get_fields_and_field_types") and not name.startswith("Metaclass")
    }


def msg_files(src_dir: Path) -> dict[str, set[str]]:
    """package -> message names, from ``<src_dir>/*/msg/*.msg``."""
    out: dict[str, set[str]] = {}
    for f in sorted(src_dir.glob("*/msg/*.msg")):
        out.setdefault(f.parent.parent.name, set()).add(f.stem)
    return out


def _value(type_str: str, counter: itertools.count) -> Any:
    m = _SEQ_RE.match(type_str)
    if m:
        n = SEQUENCE_LENGTH if m.group(2) is None else min(SEQUENCE_LENGTH, int(m.group(2)))
        return [_value(m.group(1), counter) for _ in range(n)]
    m = _ARRAY_RE.match(type_str)
    if m:
        return [_value(m.group(1), counter) for _ in range(int(m.group(2)))]
    k = next(counter)
    m = _BSTRING_RE.match(type_str)
    if m:
        return f"s{k}"[: int(m.group(2))]
    if type_str in ("string", "wstring"):
        return f"text {k} \u00fc\u00df"  # non-ASCII: checks UTF-8 end to end
    if type_str in _FLOATS:
        return 0.5 + 0.25 * k
    if type_str in _INT_VALUE:
        return _INT_VALUE[type_str](k)
    if type_str == "boolean":
        return True
    if type_str in ("byte", "octet"):
        return bytes([1 + k % 200])
    if type_str == "char":
        return chr(ord("a") + k % 26)
    if "/" in type_str:
        return fill(message_class(type_str), counter)
    raise ValueError(f"unsupported field type {type_str!r}")


def fill(cls: type, counter: itertools.count | None = None) -> Any:
    """An instance of ``cls`` with every field (recursively) set to a non-default value."""
    counter = itertools.count(1) if counter is None else counter
    msg = cls()
    for name, type_str in cls.get_fields_and_field_types().items():
        value = _value(type_str, counter)
        setattr(msg, name, value)
    return msg


def to_plain(value: Any) -> Any:
    """Messages -> dicts, arrays/numpy/bytes -> lists: a structure ``==`` compares field by field."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: to_plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple, array.array)):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays (fixed-size numeric arrays)
        return value.tolist()
    if isinstance(value, bytes):
        return list(value)
    return value


def default_leaves(filled: Any, default: Any, path: str = "") -> list[str]:
    """Paths of leaf fields of ``filled`` that still equal the default (should be empty)."""
    if isinstance(filled, dict):
        out = []
        for key in filled:
            sub_default = default.get(key) if isinstance(default, dict) else None
            out += default_leaves(filled[key], sub_default, f"{path}.{key}" if path else key)
        return out
    if isinstance(filled, list):
        if not filled or filled == default:
            return [path]
        out = []
        for i, item in enumerate(filled):
            # each element must differ from a default-constructed element of its type
            item_default = {k: None for k in item} if isinstance(item, dict) else None
            out += default_leaves(item, item_default, f"{path}[{i}]")
        return out
    return [path] if filled == default or filled in (0, 0.0, False, "", None) else []
