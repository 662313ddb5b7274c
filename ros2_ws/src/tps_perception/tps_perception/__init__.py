"""Lidar/camera preprocessing, 3D detector and agent tokenizer, and the perception node."""
