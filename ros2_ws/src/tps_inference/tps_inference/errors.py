"""Every exception type that :mod:`tps_inference` raises on purpose, in one place.

Callers catch the base class they care about:

- :class:`ConversionError` -- a malformed ``sensor_msgs`` message (or an array that cannot become
  one); re-exported as ``tps_inference.conversions.ConversionError``.
- :class:`InputError` and its subclasses -- a bad input handed to :class:`tps_inference.Engine`
  (unknown/missing name, wrong dtype, wrong rank/shape, NaN/inf where forbidden). The message
  always names the input and what was expected.
- :class:`ArtifactError` and its subclasses -- a model file that cannot be trusted (missing,
  sha256 mismatch, not listed in ``models/manifest.yaml``, malformed manifest). The message always
  names the file.
- :class:`BackendUnavailableError` -- a requested backend (TensorRT, CUDA, ...) is not usable on
  this machine; the message says what is missing.
- :class:`EngineCacheError` -- a cached TensorRT engine is stale or corrupted and may not be
  rebuilt (or rebuilding failed).

All inherit :class:`InferenceError`. Input and conversion errors are also ``ValueError``s, artifact
errors ``RuntimeError``s (a missing file also ``FileNotFoundError``), so generic handlers keep
working.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class of every error raised on purpose by tps_inference."""


class ConversionError(InferenceError, ValueError):
    """A sensor message (PointCloud2, Image) is malformed, or an array cannot be converted to one."""


class InputError(InferenceError, ValueError):
    """An engine input is wrong; the message names the input and what was expected."""


class InputNameError(InputError, KeyError):
    """An input name is unknown to the model, or a required input is missing."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0]) if self.args else ""


class InputDtypeError(InputError, TypeError):
    """An input is not a numpy array of the dtype the model expects (no silent casting)."""


class InputShapeError(InputError):
    """An input has the wrong rank, a wrong fixed dimension, or an inconsistent dynamic dimension."""


class InputValueError(InputError):
    """An input contains NaN or inf where its spec forbids non-finite values."""


class ArtifactError(InferenceError, RuntimeError):
    """A model artifact cannot be trusted or loaded; the message names the file."""


class ArtifactMissingError(ArtifactError, FileNotFoundError):
    """A model file named by the manifest (or by the caller) does not exist."""


class ArtifactChecksumError(ArtifactError):
    """A model file's sha256 does not match the one recorded for it."""


class ManifestError(ArtifactError):
    """``models/manifest.yaml`` is missing, malformed, or does not list the requested model."""


class BackendUnavailableError(InferenceError, RuntimeError):
    """The requested backend or device cannot be used here; the message says what is missing."""


class EngineCacheError(InferenceError, RuntimeError):
    """A cached TensorRT engine is stale or corrupted and was not (or could not be) rebuilt."""
