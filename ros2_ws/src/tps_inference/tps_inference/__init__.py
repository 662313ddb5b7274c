"""Inference runtime (ONNX Runtime, TensorRT, torch backends), engine cache, artifact trust and
sensor-message <-> numpy conversions.

``import tps_inference`` imports neither onnxruntime, torch nor tensorrt: each backend imports
its library when a model is loaded. Message conversions live in :mod:`tps_inference.conversions`
(the only module that imports message types).
"""

from .engine import BackendSelection, Engine, EngineResult, select_backend
from .engine_params import EngineParams
from .errors import (
    ArtifactChecksumError,
    ArtifactError,
    ArtifactMissingError,
    BackendUnavailableError,
    ConversionError,
    EngineCacheError,
    InferenceError,
    InputDtypeError,
    InputError,
    InputNameError,
    InputShapeError,
    InputValueError,
    ManifestError,
)
from .specs import TensorSpec

__all__ = [
    "ArtifactChecksumError",
    "ArtifactError",
    "ArtifactMissingError",
    "BackendSelection",
    "BackendUnavailableError",
    "ConversionError",
    "Engine",
    "EngineCacheError",
    "EngineParams",
    "EngineResult",
    "InferenceError",
    "InputDtypeError",
    "InputError",
    "InputNameError",
    "InputShapeError",
    "InputValueError",
    "ManifestError",
    "TensorSpec",
    "select_backend",
]
