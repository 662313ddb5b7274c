"""Publisher half of test_roundtrip.py, run as its own process: publishes one filled message of
each type named on the command line on ``<prefix>/<pkg>/<Name>`` (reliable, transient local, so a
late subscriber still gets it), prints READY, and spins until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from roundtrip_values import fill, message_class

QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> None:
    prefix, type_names = sys.argv[1], sys.argv[2:]
    rclpy.init()
    node = rclpy.create_node("roundtrip_publisher")
    publishers = []
    try:
        for type_name in type_names:
            cls = message_class(type_name)
            pub = node.create_publisher(cls, f"{prefix}/{type_name}", QOS)
            pub.publish(fill(cls))
            publishers.append(pub)
        print(f"READY {len(publishers)}", flush=True)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
