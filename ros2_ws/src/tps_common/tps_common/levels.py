"""Health levels, one convention for cores and nodes (ROS-free).

The ints equal ``diagnostic_msgs/DiagnosticStatus`` levels (OK 0, WARN 1, ERROR 2, STALE 3);
cores return them, :mod:`tps_common.diagnostics` turns them into messages.
"""

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}
