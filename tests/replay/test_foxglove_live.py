"""``tps-replay --foxglove`` / ``tps-eval --foxglove``: :class:`tps_eval.replay.live.FoxgloveLive`
serves messages over the Foxglove WebSocket protocol (v1). A plain WebSocket client written here
(RFC 6455 over a socket; no client library is installed) connects as Foxglove would: the channels
are advertised with the project's message definitions (``ros2msg``) and CDR encoding, a
subscription receives the exact bytes logged, and a type the typestore does not know is not
served."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest

SUBPROTOCOL = "foxglove.sdk.v1"  # what foxglove-sdk's server accepts (its handshake refuses others)
OP_MESSAGE_DATA = 0x01          # server binary opcode: subscription id u32, log time u64, payload
OP_TIME = 0x02                  # server binary opcode: timestamp u64 (the "time" capability)


class WsClient:
    """The client half of a WebSocket connection: text frames out (masked), frames in."""

    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        assert " 101 " in lines[0], f"no WebSocket upgrade: {lines[0]}"
        assert any(h.lower() == f"sec-websocket-protocol: {SUBPROTOCOL}" for h in lines[1:]), lines

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def _parse(self):
        """(opcode, fin, payload, frame length) of the frame at the start of the buffer, or None
        while it is incomplete (nothing is consumed: a timeout never loses half a frame)."""
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        n, at = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            (n,), at = struct.unpack_from(">H", buf, 2), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            (n,), at = struct.unpack_from(">Q", buf, 2), 10
        mask = None
        if b1 & 0x80:
            if len(buf) < at + 4:
                return None
            mask, at = buf[at:at + 4], at + 4
        if len(buf) < at + n:
            return None
        payload = buf[at:at + n]
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return b0 & 0x0F, bool(b0 & 0x80), payload, at + n

    def frame(self) -> tuple[int, bytes]:
        """The next data frame (opcode, payload); control frames (ping, pong) are skipped."""
        while True:
            parsed = self._parse()
            while parsed is None:
                self.buf += self._recv()
                parsed = self._parse()
            opcode, fin, payload, size = parsed
            self.buf = self.buf[size:]
            assert fin, "fragmented frames are not expected from the server"
            if opcode in (0x1, 0x2):
                return opcode, payload
            if opcode == 0x8:
                raise ConnectionError(f"the server closed the connection: {payload!r}")

    def json_op(self, op: str, deadline_s: float = 10.0) -> dict:
        """The next text message whose ``op`` is ``op`` (others are skipped)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            opcode, payload = self.frame()
            if opcode == 0x1:
                msg = json.loads(payload)
                if msg.get("op") == op:
                    return msg
        raise TimeoutError(f"no '{op}' message within {deadline_s} s")

    def send_json(self, obj: dict) -> None:
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        head = bytes([0x81])
        head += bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + struct.pack(">H", len(data))
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def live():
    from tps_eval.replay.live import FoxgloveLive

    server = FoxgloveLive(port=0)
    yield server
    server.close()


def _string_cdr(text: str) -> bytes:
    """std_msgs/msg/String in CDR (little endian): encapsulation header, length incl. NUL, text."""
    data = text.encode() + b"\0"
    body = struct.pack("<I", len(data)) + data
    return b"\x00\x01\x00\x00" + body


def test_channels_are_advertised_with_the_projects_schemas_and_messages_arrive(live):
    status = "/tps/monitor/status"
    live.log(status, "tps_msgs/msg/MonitorStatus", b"\x00\x01\x00\x00", 1)     # creates the channel
    live.log("/chatter", "std_msgs/msg/String", _string_cdr("first"), 2)
    live.log("/unknown", "no_such_pkg/msg/Nothing", b"\x00", 3)                  # not served
    client = WsClient(live.port)
    try:
        info = client.json_op("serverInfo")
        assert info["name"] == "tps" and "time" in info["capabilities"], info
        advertised = {}
        end = time.monotonic() + 10.0
        while {status, "/chatter"} - set(advertised) and time.monotonic() < end:
            for ch in client.json_op("advertise")["channels"]:
                advertised[ch["topic"]] = ch
        assert {status, "/chatter"} <= set(advertised), advertised.keys()
        assert "/unknown" not in advertised and "/unknown" in live.skipped
        ms = advertised[status]
        assert (ms["encoding"], ms["schemaName"], ms["schemaEncoding"]) == (
            "cdr", "tps_msgs/msg/MonitorStatus", "ros2msg")
        assert "certainty" in ms["schema"] and "uint8 state" in ms["schema"], ms["schema"][:400]

        client.send_json({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": advertised["/chatter"]["id"]}]})
        payload = _string_cdr("hello over foxglove")
        got = None
        end = time.monotonic() + 10.0
        while got is None and time.monotonic() < end:
            # the subscription is processed asynchronously: log until a message comes back
            live.log("/chatter", "std_msgs/msg/String", payload, 123_456_789)
            client.sock.settimeout(0.5)
            try:
                opcode, data = client.frame()
            except TimeoutError:
                continue
            if opcode == 0x2 and data[0] == OP_MESSAGE_DATA:
                got = data
        assert got is not None, "no message data for the subscription within 10 s"
        sub_id, log_ns = struct.unpack_from("<IQ", got, 1)
        assert (sub_id, log_ns) == (7, 123_456_789)
        assert got[13:] == payload

        # the sim time reaches the client (the "time" capability; Foxglove's clock follows it)
        stamp, end = None, time.monotonic() + 10.0
        while stamp is None and time.monotonic() < end:
            live.time(42_000_000_000)
            try:
                opcode, data = client.frame()
            except TimeoutError:
                continue
            if opcode == 0x2 and data[0] == OP_TIME:
                (stamp,) = struct.unpack_from("<Q", data, 1)
        assert stamp == 42_000_000_000
    finally:
        client.close()
