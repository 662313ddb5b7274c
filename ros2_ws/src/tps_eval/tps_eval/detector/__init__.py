"""Offline detector tools: dataset shards -> frames with ground truth (``data``), nuScenes-devkit
metrics on our boxes (``metrics``) and the ``tps-eval detector`` verb (``evaluate``). The onboard
detector itself is ``tps_perception``."""
