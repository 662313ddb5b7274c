"""Inference backends behind :class:`tps_inference.Engine`: ONNX Runtime, native TensorRT, torch.

Each backend module imports its heavy library (onnxruntime, tensorrt, torch) inside the functions
that need it, so ``import tps_inference`` works on a machine that has none of them.
"""

from .base import Backend, BackendRun

__all__ = ["Backend", "BackendRun"]
