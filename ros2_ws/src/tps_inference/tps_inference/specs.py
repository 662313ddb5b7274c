"""Tensor specs (name, dtype, shape with dynamic dims) and the input checks built on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputDtypeError, InputNameError, InputShapeError, InputValueError

Dim = int | str | None
"""One dimension: a fixed size (int), a named dynamic size (str, e.g. ``"batch"``; the same name
must have the same size in every input of one call), or an anonymous dynamic size (None)."""


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of a model.

    Attributes:
        name: tensor name as the model knows it.
        dtype: numpy dtype (inputs must match it exactly; no silent casting).
        shape: one :data:`Dim` per axis.
        allow_nonfinite: inputs only: NaN/inf accepted (otherwise rejected when checking is on).
    """

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]
    allow_nonfinite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def is_dynamic(self) -> bool:
        """True if any dimension is not a fixed int."""
        return any(not isinstance(d, int) or d < 0 for d in self.shape)

    def shape_text(self) -> str:
        """``[batch, 3, ?]`` -- named dims by name, anonymous dynamic dims as ``?``."""
        return "[" + ", ".join("?" if d is None or (isinstance(d, int) and d < 0) else str(d)
                               for d in self.shape) + "]"

    def describe(self) -> str:
        """``x: float32[batch, 3, 224]``."""
        return f"{self.name}: {self.dtype.name}{self.shape_text()}"


def normalise_dim(dim) -> Dim:
    """Backend dimension -> :data:`Dim`: ints >= 0 stay, -1/None/'' become None, strings stay."""
    if isinstance(dim, str):
        return dim or None
    if dim is None:
        return None
    dim = int(dim)
    return dim if dim >= 0 else None


def check_inputs(
    specs: Sequence[TensorSpec],
    inputs: Mapping[str, object],
    *,
    check_finite: bool = True,
) -> dict[str, np.ndarray]:
    """Validate named inputs against their specs.

    Args:
        specs: the model's input specs.
        inputs: name -> numpy array.
        check_finite: reject NaN/inf in floating-point inputs whose spec does not allow them
            (one vectorised pass over each float input).

    Returns:
        The inputs (same arrays) keyed by name, in spec order.

    Raises:
        InputNameError: an unknown name or a missing input (names all expected inputs).
        InputDtypeError: not a numpy array, or a different dtype.
        InputShapeError: wrong rank, wrong fixed dimension, or a named dynamic dimension whose
            size differs between inputs.
        InputValueError: NaN/inf where the spec forbids it (counts and first index).
    """
    by_name = {s.name: s for s in specs}
    expected = ", ".join(s.describe() for s in specs)
    if not isinstance(inputs, Mapping):
        raise InputNameError(f"inputs must be a mapping name -> array; expected inputs: {expected}")
    unknown = [n for n in inputs if n not in by_name]
    if unknown:
        raise InputNameError(f"unknown input(s) {unknown}; the model's inputs are: {expected}")
    missing = [s.name for s in specs if s.name not in inputs]
    if missing:
        raise InputNameError(f"missing input(s) {missing}; the model's inputs are: {expected}")
    bound: dict[str, tuple[int, str]] = {}
    out = {}
    for spec in specs:
        arr = inputs[spec.name]
        if not isinstance(arr, np.ndarray):
            raise InputDtypeError(
                f"input '{spec.name}' must be a numpy.ndarray of {spec.dtype.name}, got {type(arr).__name__}"
            )
        if arr.dtype != spec.dtype:
            raise InputDtypeError(
                f"input '{spec.name}' has dtype {arr.dtype}; expected {spec.dtype.name} ({spec.describe()})"
            )
        if arr.ndim != len(spec.shape):
            raise InputShapeError(
                f"input '{spec.name}' has rank {arr.ndim} (shape {arr.shape}); expected rank {len(spec.shape)}"
                f" ({spec.describe()})"
            )
        for axis, (dim, size) in enumerate(zip(spec.shape, arr.shape, strict=True)):
            if isinstance(dim, int) and dim >= 0 and size != dim:
                raise InputShapeError(
                    f"input '{spec.name}' has shape {arr.shape}; dimension {axis} must be {dim} ({spec.describe()})"
                )
            if isinstance(dim, str):
                if dim in bound and bound[dim][0] != size:
                    size0, owner = bound[dim]
                    raise InputShapeError(
                        f"input '{spec.name}' dimension {axis} ('{dim}') is {size}, but input '{owner}' has"
                        f" '{dim}' = {size0}; they must match"
                    )
                bound.setdefault(dim, (size, spec.name))
        if check_finite and not spec.allow_nonfinite and arr.dtype.kind in "fc" and arr.size:
            finite = np.isfinite(arr)
            if not finite.all():
                n_nan = int(np.isnan(arr).sum())
                n_inf = int(arr.size - finite.sum()) - n_nan
                first = tuple(int(i) for i in np.argwhere(~finite)[0])
                raise InputValueError(
                    f"input '{spec.name}' contains {n_nan} NaN and {n_inf} inf value(s) (first at index {first});"
                    " its spec requires finite values"
                )
        out[spec.name] = arr
    return out
