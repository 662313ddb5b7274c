"""Inference runtime (ONNX Runtime, TensorRT, torch backends), engine cache, artifact trust and sensor-message <-> numpy conversions."""
