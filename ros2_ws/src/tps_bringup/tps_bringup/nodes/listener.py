"""Demo listener: logs the ``std_msgs/String`` messages it hears on ``~/input/chatter``."""

from __future__ import annotations

import sys

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import String
from tps_inference.params import ParameterError, declare_from_schema
from tps_inference.ros_spin import spin_until_shutdown

from tps_bringup.demo import LISTENER_SCHEMA, Listener

DIAGNOSTICS_PERIOD_S = 1.0


class ListenerNode(Node):
    """Thin node around :class:`tps_bringup.demo.Listener`."""

    def __init__(self, node_name: str = "listener", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = declare_from_schema(self, LISTENER_SCHEMA)
        self.core = Listener(values["log_every"])
        self.sub = self.create_subscription(String, "~/input/chatter", self._on_message, 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.get_logger().info(f"listening on {self.sub.topic_name}")

    def _on_message(self, msg: String) -> None:
        result = self.core.update(msg.data)
        if result.log_line:
            self.get_logger().info(result.log_line)

    def _publish_diagnostics(self) -> None:
        level = DiagnosticStatus.OK if self.core.count else DiagnosticStatus.WARN
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: reception",
            message="ok" if self.core.count else "nothing received yet",
            values=[KeyValue(key="received", value=str(self.core.count))],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)


NODE_CLASS = ListenerNode


def main(args: list[str] | None = None) -> None:
    """Console script ``tps_demo_listener``."""
    rclpy.init(args=args)
    node = None
    try:
        node = NODE_CLASS()
        spin_until_shutdown(node)  # a signal during the wait-set build is a clean stop too
    except (ParameterError, InvalidParameterTypeException) as exc:  # a bad parameter: message, exit 2
        print(f"tps_demo_listener: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
