"""Answering a repeated frame with the answer already given (ROS-free).

The synchronous bridge re-publishes a step's sensor data when a node has not answered it within its
``sync_timeout_s`` (at start-up: step 0 until every node answered). A node that keeps state across
frames (a tracker, a fault injector) would advance that state once per copy, so
the *count* of repeats -- a matter of host load and start-up timing -- would change the frames
after it: two identical closed-loop episodes diverged that way. A node with such state therefore
answers a repeat of the frame it answered last with the very messages it published for it
(:class:`FrameRepeats`) and does not run again.

The key must cover every input the answer depends on: an answer made before a late input arrived
(a latched map, light heads, /tf_static) must not be given again once it has. Perception applies
the same rule (its own copy, kept as it was while the fallback's failed CI runs are unexplained);
the fallback has none yet (its answer depends on several such inputs). A node adopting this module
should be checked against the closing note of 2026-12-03's fifth stop.

A repeat is recognised in two steps: a cheap key (stamp, the cloud's frame and layout, and whatever
else the answer depends on: the pose used, the monitor state, ...) must equal the last frame's, and
only then the cloud's bytes are compared with the last message's (kept by reference, not copied).
"""

from __future__ import annotations


def cloud_layout(msg) -> tuple:
    """A sensor_msgs/PointCloud2's frame and layout (everything but stamp and bytes)."""
    return (msg.header.frame_id, msg.height, msg.width, msg.point_step, msg.row_step, msg.is_bigendian,
            tuple((f.name, f.offset, f.datatype, f.count) for f in msg.fields))


class FrameRepeats:
    """The outputs of the frame answered last, to answer its repeats with."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.msg = None                    # the frame's input message (a reference, not a copy)
        self.outputs: list[tuple[object, object]] = []
        self.answered = 0                  # repeats answered so far

    def is_repeat(self, key: tuple, msg) -> bool:
        """Whether ``msg`` with ``key`` is the frame answered last, byte for byte."""
        return (key == self.key and bool(self.outputs) and self.msg is not None
                and msg.data == self.msg.data)

    def answer(self) -> None:
        """Publish the last frame's outputs again (a repeat of it arrived)."""
        self.answered += 1
        for pub, out in self.outputs:
            pub.publish(out)

    def begin(self, key: tuple, msg) -> None:
        """A new frame: forget the last one's outputs."""
        self.key, self.msg, self.outputs = key, msg, []

    def emit(self, pub, out) -> None:
        """Publish ``out`` on ``pub`` and keep it as an output of the current frame."""
        pub.publish(out)
        self.outputs.append((pub, out))
