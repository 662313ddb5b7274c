"""ROS 2 nodes of tps_perception (thin: parameters, conversions, core call, publish)."""
