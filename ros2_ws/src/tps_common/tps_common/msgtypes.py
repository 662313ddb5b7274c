"""Message classes by their type names (``pkg/msg/Name``), for nodes that subscribe to topics
whose types they learn from the graph (the replay's recorder, the bridge's step-0 answers)."""

from __future__ import annotations

import importlib


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name`` (ImportError when its package is missing,
    ValueError when the name is not of that form)."""
    parts = msgtype.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a message type name (pkg/msg/Name): {msgtype!r}")
    pkg, _, name = parts
    return getattr(importlib.import_module(f"{pkg}.msg"), name)
