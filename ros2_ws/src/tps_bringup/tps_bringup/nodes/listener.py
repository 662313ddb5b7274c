"""Demo listener: logs the ``std_msgs/String`` messages it hears on ``~/input/chatter``."""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import String
from tps_common import diagnostics as diag
from tps_common.node import run_node
from tps_common.params import declare_from_schema
from tps_common.qos import DIAGNOSTICS_QOS

from tps_bringup.demo import LISTENER_SCHEMA, Listener

DIAGNOSTICS_PERIOD_S = 1.0


class ListenerNode(Node):
    """Thin node around :class:`tps_bringup.demo.Listener`."""

    def __init__(self, node_name: str = "listener", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = declare_from_schema(self, LISTENER_SCHEMA)
        self.core = Listener(values["log_every"])
        self.sub = self.create_subscription(String, "~/input/chatter", self._on_message, 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.get_logger().info(f"listening on {self.sub.topic_name}")

    def _on_message(self, msg: String) -> None:
        result = self.core.update(msg.data)
        if result.log_line:
            self.get_logger().info(result.log_line)

    def _publish_diagnostics(self) -> None:
        status = diag.status(f"{self.get_name()}: reception", diag.OK if self.core.count else diag.WARN,
                             "ok" if self.core.count else "nothing received yet", {"received": self.core.count})
        self.diag_pub.publish(diag.array(self.get_clock().now().to_msg(), [status]))


NODE_CLASS = ListenerNode


def main(args: list[str] | None = None) -> None:
    """Console script ``tps_demo_listener``."""
    sys.exit(run_node(NODE_CLASS, "tps_demo_listener", args))


if __name__ == "__main__":
    main()
