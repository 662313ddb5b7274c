"""One diagnostics convention for every node (imports diagnostic_msgs and std_msgs, never rclpy).

* Levels are the ints of :mod:`tps_common.levels` (OK 0, WARN 1, ERROR 2, STALE 3) everywhere in
  the cores (``diagnostic_msgs/DiagnosticStatus`` stores them as bytes: converted here only).
* Every status is named ``<node name>: <aspect>`` (e.g. ``perception: processing_time``).
* Numbers go into ``KeyValue``s; floats with 4 significant digits.
* Every node reports its processing time as ``<node>: processing_time`` with the keys
  ``processing_time_ms`` and ``budget_ms`` (the evaluation's collector reads the former), WARN
  above the node's ``processing_budget_ms`` parameter and ERROR above its
  ``processing_error_budget_ms`` (one lidar period by default): :func:`processing_time_status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from tps_common.levels import ERROR, LEVEL_NAMES, OK, STALE, WARN

__all__ = ["ERROR", "LEVEL_NAMES", "OK", "STALE", "WARN", "array", "level_of", "processing_time_status",
           "status"]
_LEVEL_BYTES = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR,
                STALE: DiagnosticStatus.STALE}
PROCESSING_TIME_ASPECT = "processing_time"
PROCESSING_TIME_KEY = "processing_time_ms"


def level_of(value) -> int:
    """The int level of a ``DiagnosticStatus.level`` (bytes or int) or of a name ('WARN')."""
    if isinstance(value, str):
        inv = {v: k for k, v in LEVEL_NAMES.items()}
        if value not in inv:
            raise ValueError(f"unknown diagnostic level {value!r}; expected one of {list(inv)}")
        return inv[value]
    if isinstance(value, (bytes, bytearray)):
        return int(value[0])
    return int(value)


def format_value(value) -> str:
    """How a KeyValue shows a number or anything else."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def status(name: str, level: int, message: str, values: Mapping | None = None,
           hardware_id: str = "") -> DiagnosticStatus:
    """One ``DiagnosticStatus``; ``level`` an int (OK/WARN/ERROR/STALE), anything else is ERROR."""
    return DiagnosticStatus(
        level=_LEVEL_BYTES.get(level, DiagnosticStatus.ERROR), name=name, message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=format_value(v)) for k, v in (values or {}).items()])


def array(stamp: Time, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    """A ``DiagnosticArray`` stamped ``stamp`` with ``statuses``."""
    return DiagnosticArray(header=Header(stamp=stamp), status=list(statuses))


def processing_time_level(ms: float, budget_ms: float, error_budget_ms: float | None = None) -> int:
    """OK, WARN above ``budget_ms``, ERROR above ``error_budget_ms`` (None: never)."""
    if error_budget_ms is not None and ms > error_budget_ms:
        return ERROR
    return WARN if ms > budget_ms else OK


def processing_time_status(node_name: str, ms: float, budget_ms: float,
                           error_budget_ms: float | None = None,
                           values: Mapping | None = None) -> DiagnosticStatus:
    """The ``<node>: processing_time`` status (see the module docstring); ``values`` are extra
    KeyValues (stage times, counts)."""
    level = processing_time_level(ms, budget_ms, error_budget_ms)
    text = f"{ms:.2f} ms"
    if level == ERROR:
        text += f" > error budget {error_budget_ms:.1f} ms"
    elif level == WARN:
        text += f" > budget {budget_ms:.1f} ms"
    kv = {PROCESSING_TIME_KEY: ms, "budget_ms": budget_ms}
    if error_budget_ms is not None:
        kv["error_budget_ms"] = error_budget_ms
    kv.update(values or {})
    return status(f"{node_name}: {PROCESSING_TIME_ASPECT}", level, text, kv)
