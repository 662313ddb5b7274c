"""The detection head's output layout, shared by the network (torch) and the numpy decoder.

Kept free of torch so that the onboard decoder, and the perception node on ONNX Runtime or
TensorRT, never import torch (4.4 s of the node's start-up when they did).
"""

CLASS_NAMES = ("car", "truck", "bus", "pedestrian", "cyclist")
# DetectedAgent.CLASS_* ids of the heatmap channels (index k -> class id k + 1).
CLASS_IDS = (1, 2, 3, 4, 5)
REG_CHANNELS = ("dx", "dy", "z", "log_l", "log_w", "log_h", "sin_yaw", "cos_yaw")
