"""tps_common.repeats: a repeat of the frame answered last (same key, same bytes) is answered with
the very messages published for it; anything else is a new frame."""

from __future__ import annotations

from array import array

from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from tps_common.repeats import FrameRepeats, cloud_layout


class _Pub:
    def __init__(self):
        self.sent = []

    def publish(self, msg):
        self.sent.append(msg)


def _cloud(data: bytes, frame: str = "lidar") -> PointCloud2:
    return PointCloud2(header=Header(frame_id=frame), height=1, width=len(data) // 4, point_step=4,
                       row_step=len(data), fields=[PointField(name="x", offset=0, datatype=7, count=1)],
                       data=array("B", data))


def test_a_repeat_is_answered_with_the_same_messages_and_counted():
    rep, pub = FrameRepeats(), _Pub()
    first = _cloud(b"\x01\x02\x03\x04")
    key = (1.0, cloud_layout(first), "pose")
    assert not rep.is_repeat(key, first)                  # nothing answered yet
    rep.begin(key, first)
    assert not rep.is_repeat(key, first)                  # begun but not answered: not a repeat
    rep.emit(pub, "trajectory")
    rep.emit(pub, "diagnostics")
    copy = _cloud(b"\x01\x02\x03\x04")                    # another message, the same bytes
    assert rep.is_repeat(key, copy)
    rep.answer()
    assert pub.sent == ["trajectory", "diagnostics"] * 2 and rep.answered == 1
    # another byte, another key part, another layout: a new frame
    assert not rep.is_repeat(key, _cloud(b"\x01\x02\x03\x05"))
    assert not rep.is_repeat((1.0, cloud_layout(first), "other pose"), copy)
    assert not rep.is_repeat((1.0, cloud_layout(_cloud(b"\x01\x02\x03\x04", "other")), "pose"), copy)
    rep.begin((1.1, cloud_layout(first), "pose"), first)  # the next frame forgets the last one's outputs
    assert not rep.is_repeat(key, copy) and rep.outputs == []
