"""SUMO-based closed-loop world, lidar/camera sensor models, CARLA-ROS-bridge-compatible bridge, faults, datasets, recording, closed-loop evaluation."""
