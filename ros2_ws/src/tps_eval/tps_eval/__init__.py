"""Every offline evaluation of the stack, behind one CLI (``tps-eval``, :mod:`tps_eval.cli`).

Closed loop: suites (``suite``), executors (local process pool and Ray, ``executors``), the
episode runner (``runner``) and its DDS collector (``collector``), episode traces (``trace``),
road queries (``road``), metrics and the at-fault taxonomy (``metrics``), reports and BEV plots
(``report``, ``bev``). Also the detector evaluation (``detector``), the expert check and the
junction-yield probe, and one seed handling for all of them (``seeds``). Only ``runner`` and
``collector`` touch ROS; everything else is plain Python. Onboard packages never import this one.
"""
