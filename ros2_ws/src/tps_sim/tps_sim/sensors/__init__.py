"""Sensor models of the simulated world: the 3D scene, lidar, camera and sensor faults."""
