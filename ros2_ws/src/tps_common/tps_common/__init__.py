"""What every TPS package needs, written once.

ROS-free core modules (import neither rclpy nor message packages):

* :mod:`tps_common.geometry` -- oriented boxes, overlap (SAT), point-in-footprint, angles,
  yaw <-> quaternion, 2-D rigid transforms (vectorised numpy).

Modules that import rclpy or message types say so in their docstring.
"""
