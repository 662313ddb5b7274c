"""check_inputs over random specs and arrays: accepts exactly the conforming inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tps_inference.errors import InputDtypeError, InputShapeError, InputValueError
from tps_inference.specs import TensorSpec, check_inputs, normalise_dim

MAX_EXAMPLES = 150
DTYPES = [np.float32, np.float64, np.int64, np.uint8]
dims = st.one_of(st.integers(1, 4), st.sampled_from(["batch", "n"]), st.none())


@st.composite
def spec_and_array(draw):
    shape = tuple(draw(st.lists(dims, min_size=0, max_size=3)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    spec = TensorSpec("t", dtype, shape)
    bound = {"batch": draw(st.integers(1, 3)), "n": draw(st.integers(1, 3))}
    conforming = tuple(d if isinstance(d, int) else bound[d] if isinstance(d, str) else draw(st.integers(0, 3))
                       for d in shape)
    mutate = draw(st.sampled_from(["none", "dtype", "rank", "dim"]))
    arr_shape, arr_dtype = conforming, dtype
    if mutate == "dtype":
        arr_dtype = np.dtype(draw(st.sampled_from([d for d in DTYPES if np.dtype(d) != dtype])))
    elif mutate == "rank":
        arr_shape = conforming + (1,)
    elif mutate == "dim" and any(isinstance(d, int) for d in shape):
        axis = next(i for i, d in enumerate(shape) if isinstance(d, int))
        arr_shape = tuple(s + 1 if i == axis else s for i, s in enumerate(conforming))
    else:
        mutate = "none"
    return spec, np.zeros(arr_shape, dtype=arr_dtype), mutate


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(case=spec_and_array())
def test_check_inputs_accepts_exactly_conforming_arrays(case):
    spec, arr, mutate = case
    expected_error = {"none": None, "dtype": InputDtypeError, "rank": InputShapeError, "dim": InputShapeError}[mutate]
    if expected_error is None:
        assert check_inputs([spec], {"t": arr})["t"] is arr
    else:
        with pytest.raises(expected_error, match="input 't'"):
            check_inputs([spec], {"t": arr})


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(size=st.integers(1, 50), n_bad=st.integers(0, 5), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64, np.float16]))
def test_nonfinite_scan_counts_exactly(size, n_bad, seed, dtype):
    rng = np.random.default_rng(seed)
    arr = rng.normal(size=size).astype(dtype)
    bad = rng.choice(size, size=min(n_bad, size), replace=False)
    arr[bad] = rng.choice([np.nan, np.inf, -np.inf], size=len(bad))
    spec = TensorSpec("t", dtype, (None,))
    if len(bad) == 0:
        check_inputs([spec], {"t": arr})
        return
    n_nan = int(np.isnan(arr).sum())
    with pytest.raises(InputValueError, match=rf"input 't' contains {n_nan} NaN and {len(bad) - n_nan} inf") as info:
        check_inputs([spec], {"t": arr})
    assert f"first at index ({int(np.sort(bad)[0])},)" in str(info.value)
    check_inputs([TensorSpec("t", dtype, (None,), allow_nonfinite=True)], {"t": arr})
    check_inputs([spec], {"t": arr}, check_finite=False)


def test_spec_text_and_dims():
    spec = TensorSpec("bev", "float32", (1, "c", None))
    assert spec.describe() == "bev: float32[1, c, ?]" and spec.is_dynamic
    assert not TensorSpec("x", np.int64, (2, 3)).is_dynamic
    assert [normalise_dim(d) for d in (3, -1, None, "", "batch")] == [3, None, None, None, "batch"]
