"""Serve a run live over the Foxglove WebSocket protocol (``foxglove-sdk``): every message the
replayer plays or records (CDR, with its ``ros2msg`` schema from the project's typestore, so
Foxglove decodes tps_msgs and carla_msgs), and the sim time. Open Foxglove, "Open connection",
``ws://HOST:PORT``, then import ``config/foxglove/tps_replay.json`` as the layout (it also fits
the result bags)."""

from __future__ import annotations

import threading

DEFAULT_PORT = 8765
SERVER_NAME = "tps"


class FoxgloveLive:
    """A Foxglove WebSocket server with one channel per topic.

    Args:
        port: TCP port (0: any free port; :attr:`port` says which).
        host: interface to listen on (default loopback).
        typestore: message definitions (default: the project's, tps_sim.recording).
    """

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1", typestore=None,
                 name: str = SERVER_NAME) -> None:
        import foxglove

        if typestore is None:
            from tps_sim.recording import build_typestore

            typestore = build_typestore()
        self._fg = foxglove
        self.store = typestore
        from foxglove.websocket import Capability

        # Time: the server announces the "time" capability, so clients follow broadcast_time (the
        # sim time) instead of the messages' receive time; without it they ignore those messages.
        self.server = foxglove.start_server(name=name, host=host, port=port, capabilities=[Capability.Time])
        self.channels: dict[str, object] = {}
        self.skipped: set[str] = set()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server.port)

    @property
    def url(self) -> str:
        """The WebSocket URL to open in Foxglove."""
        return f"ws://127.0.0.1:{self.port}"

    def log(self, topic: str, msgtype: str, raw: bytes, log_ns: int) -> None:
        """Send one CDR message (thread-safe); a type the typestore does not know is skipped."""
        with self._lock:
            channel = self.channels.get(topic)
            if channel is None:
                if topic in self.skipped:
                    return
                try:
                    msgdef, _ = self.store.generate_msgdef(msgtype, ros_version=2)
                except Exception:  # noqa: BLE001 - unknown type: not served
                    self.skipped.add(topic)
                    return
                schema = self._fg.Schema(name=msgtype, encoding="ros2msg", data=msgdef.encode())
                channel = self._fg.Channel(topic, schema=schema, message_encoding="cdr")
                self.channels[topic] = channel
        channel.log(bytes(raw), log_time=int(log_ns))

    def time(self, t_ns: int) -> None:
        """Tell connected clients the current (sim) time."""
        self.server.broadcast_time(int(t_ns))

    def close(self) -> None:
        """Stop the server."""
        for channel in self.channels.values():
            channel.close()
        self.server.stop()
