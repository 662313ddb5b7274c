"""Planner, confidence monitor, point-cloud fallback planner, trajectory arbiter and controller, and their nodes."""
