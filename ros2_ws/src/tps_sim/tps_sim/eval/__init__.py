"""Closed-loop evaluation: metrics (``metrics``), the episode runner (``runner``), executors
(local process pool and Ray, ``executors``), reports (``report``) and the ``tps-eval`` CLI
(``cli``). Only ``runner`` and the code it starts touch ROS; metrics and reports are pure."""
