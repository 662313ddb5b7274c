"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..specs import TensorSpec


@dataclass(frozen=True)
class BackendRun:
    """What one backend call returns.

    Attributes:
        outputs: output name -> host numpy array.
        device_time_ms: time the accelerator spent (CUDA events around the launch), or None
            where there is no device clock (CPU backends).
    """

    outputs: dict[str, np.ndarray]
    device_time_ms: float | None = None


class Backend(ABC):
    """A loaded model on one runtime.

    Attributes:
        name: "onnxruntime", "tensorrt" or "torch".
        device: "cpu" or "cuda".
        detail: human-readable specifics (execution providers, TensorRT version, ...).
        input_specs / output_specs: the model's tensors.
    """

    name: str = ""
    device: str = "cpu"
    detail: str = ""
    input_specs: tuple[TensorSpec, ...] = ()
    output_specs: tuple[TensorSpec, ...] = ()

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> BackendRun:
        """Run on already-validated inputs (exact dtypes and shapes)."""
