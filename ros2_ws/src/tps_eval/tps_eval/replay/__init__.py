"""Rosbag replay of the real node graph (``tps-replay``) and regression replays.

A rosbag2 (MCAP or sqlite3, read with ``rosbags``) is played into a node graph started by
``tps_bringup`` on sim time (``/clock``), in lockstep (each lidar frame waits for the graph's
outputs: deterministic) or in real time at a rate factor; the outputs, ``/tf`` and diagnostics are
recorded into a result MCAP and a report (JSON, Markdown, PNG plots) is written.

ROS-free modules: ``config`` (the replay configuration and the node table), ``bagio`` (reading and
adapting input bags, writing result bags), ``analysis`` (report numbers), ``plots``, ``report``,
``compare`` (the regression comparison). ``player`` and ``recorder`` use rclpy; ``live`` serves a
run over the Foxglove WebSocket protocol; ``regression`` runs the regression table; ``cli`` is the
console script.
"""
