"""Demo talker: publishes ``std_msgs/String`` "<message> <n>" on ``~/output/chatter``.

With ``exit_after`` > 0 it raises :class:`tps_bringup.demo.DemoExit` from its timer callback after
that many messages, which ends its process (or a single_process host) with ``exit_code``: the
runner's tests use it as a node that crashes.
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import String
from tps_common import diagnostics as diag
from tps_common.node import run_node
from tps_common.params import declare_from_schema
from tps_common.qos import DIAGNOSTICS_QOS

from tps_bringup.demo import TALKER_SCHEMA, DemoExit, Talker, TalkerParams

DIAGNOSTICS_PERIOD_S = 1.0


class TalkerNode(Node):
    """Thin node around :class:`tps_bringup.demo.Talker`."""

    def __init__(self, node_name: str = "talker", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = declare_from_schema(self, TALKER_SCHEMA)  # raises ParameterError naming the culprit
        self.core = Talker(TalkerParams(**values))
        self.pub = self.create_publisher(String, "~/output/chatter", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.timer = self.create_timer(self.core.params.period_s, self._tick)
        self.diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.get_logger().info(
            f"publishing on {self.pub.topic_name} at {self.core.params.rate_hz} Hz"
            + (f", exiting with code {self.core.params.exit_code} after {self.core.params.exit_after}"
               if self.core.params.exit_after else "")
        )

    def _tick(self) -> None:
        step = self.core.update()
        if step.text is not None:
            self.pub.publish(String(data=step.text))
        if step.exit_code is not None:
            text = f"exit_after={self.core.params.exit_after} reached: exiting with code {step.exit_code}"
            self.get_logger().error(text)
            raise DemoExit(step.exit_code, text)

    def _publish_diagnostics(self) -> None:
        status = diag.status(f"{self.get_name()}: publishing", diag.OK, "ok", {"published": self.core.count})
        self.diag_pub.publish(diag.array(self.get_clock().now().to_msg(), [status]))


NODE_CLASS = TalkerNode


def main(args: list[str] | None = None) -> None:
    """Console script ``tps_demo_talker``."""
    sys.exit(run_node(NODE_CLASS, "tps_demo_talker", args))


if __name__ == "__main__":
    main()
