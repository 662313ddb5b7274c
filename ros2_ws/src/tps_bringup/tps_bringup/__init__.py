"""Node-graph runner: starts the graph declared in config/graph/*.yaml as processes or one executor."""
