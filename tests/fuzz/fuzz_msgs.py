"""Malformed ROS messages for the node fuzz test (tests/fuzz/test_fuzz_nodes.py), drawn by hypothesis.

A malformed message is built from a *recipe* that hypothesis draws (:func:`recipes`): a kind and a
few small integers; bulk content (point bytes, pixels, long arrays) comes from a numpy generator
seeded by the recipe, so hypothesis stays within its choice budget and a recipe rebuilds the same
message. Kinds:

* ``mutate``: a valid message of the topic (its template) with 1-4 leaves changed to bad values:
  NaN/inf/huge floats, integer extremes (unknown enum values, negative or 2**31-1 stamp seconds,
  nanoseconds >= 1e9), wrong/empty/huge frame ids and strings, sequences emptied, truncated,
  grown (mismatched array lengths) or made huge, nested messages reset to their defaults;
* ``random``: every field of the type random, recursively (sequences of random length);
* ``empty``: the default-constructed message;
* ``layout``: PointCloud2 and Image only: inconsistent point_step/row_step/width/height/data length,
  missing fields, wrong or unknown datatypes, overlapping offsets, big-endian, wrong encodings,
  a few MB of data.

Everything is bounded: the largest message is about ``MAX_BYTES``.
"""

from __future__ import annotations

import array
import importlib
import math
import re

import numpy as np
from hypothesis import strategies as st

MAX_BYTES = 4_000_000          # the largest payload of one malformed message
HUGE_SEQUENCE = 100_000        # primitive sequences made huge (floats: 400-800 kB)
HUGE_MSG_SEQUENCE = 3_000      # sequences of messages made huge (Python objects: bounded for speed)
MAX_PATHS_PER_SEQUENCE = 3     # leaves walked into per message sequence (its first elements)

BAD_FLOATS = (math.nan, math.inf, -math.inf, -math.nan, 0.0, -0.0, 1e30, -1e30, 3.0e38, -3.0e38, 1e-42,
              -1.0, 1e9, -1e9, 5e-324)
BAD_STRINGS = ("", "map", "base_link", "ego_vehicle/lidar", "ego_vehicle/rgb_front", "wrong_frame", "/map",
               " map", "x" * 4096, "ünïcødé/frame", "map\n", "0")
INT_RANGES = {
    "int8": (-(2 ** 7), 2 ** 7 - 1), "uint8": (0, 2 ** 8 - 1), "byte": (0, 255), "octet": (0, 255),
    "char": (0, 255),
    "int16": (-(2 ** 15), 2 ** 15 - 1), "uint16": (0, 2 ** 16 - 1),
    "int32": (-(2 ** 31), 2 ** 31 - 1), "uint32": (0, 2 ** 32 - 1),
    "int64": (-(2 ** 63), 2 ** 63 - 1), "uint64": (0, 2 ** 64 - 1),
}
FLOAT_TYPES = {"float": np.float32, "double": np.float64}
ARRAY_CODES = {"float": "f", "double": "d", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
               "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "octet": "B", "byte": "B", "char": "B"}
_SEQ = re.compile(r"^sequence<([^,>]+)(?:, (\d+))?>$")
_FIXED = re.compile(r"^(.+)\[(\d+)\]$")

KINDS = ("mutate", "mutate", "mutate", "mutate", "random", "empty", "layout", "layout")


# ------------------------------------------------------------------------------------ recipes
def recipes():
    """The hypothesis strategy of recipes: (kind, seed, ops) with ops = 1-4 (path, op, value) ints."""
    op = st.tuples(st.integers(0, 10_000), st.integers(0, 63), st.integers(0, 10_000))
    return st.tuples(st.sampled_from(KINDS), st.integers(0, 2 ** 32 - 1), st.lists(op, min_size=1, max_size=4))


def build(msg_type, template, recipe):
    """The malformed message of ``recipe`` for a topic of ``msg_type`` whose valid message is
    ``template()``. Returns (message, a short description for failure reports)."""
    kind, seed, ops = recipe
    rng = np.random.default_rng(seed)
    if kind == "layout" and msg_type.__name__ in LAYOUTS:
        return LAYOUTS[msg_type.__name__](rng, template(), ops)
    if kind == "random":
        return random_message(msg_type, rng, depth=0), "random"
    if kind == "empty":
        return msg_type(), "empty"
    msg = template()
    done = [mutate(msg, p, o, v, rng) for p, o, v in ops]
    return msg, "mutate " + "; ".join(done)


# ------------------------------------------------------------------------------------ type walking
def _msg_class(type_str: str):
    pkg, name = type_str.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _is_basic(t: str) -> bool:
    return t in INT_RANGES or t in FLOAT_TYPES or t == "boolean"


def _is_string(t: str) -> bool:
    return t.startswith("string") or t.startswith("wstring")


def leaves(msg, prefix: str = ""):
    """Every mutable place of ``msg``: (owner, field, type string, description) for its fields,
    recursively into nested messages and the first elements of message sequences."""
    out = []
    for field, t in msg.get_fields_and_field_types().items():
        where = f"{prefix}{field}"
        value = getattr(msg, field)
        out.append((msg, field, t, where))
        seq = _SEQ.match(t)
        if "/" in t and not seq and not _FIXED.match(t):
            out.extend(leaves(value, where + "."))
        elif seq and "/" in seq.group(1):
            for i, item in enumerate(list(value)[:MAX_PATHS_PER_SEQUENCE]):
                out.extend(leaves(item, f"{where}[{i}]."))
    return out


def _bad_scalar(t: str, vi: int, rng):
    if t in FLOAT_TYPES:
        return BAD_FLOATS[vi % len(BAD_FLOATS)] if vi % 8 else float(rng.normal(0, 1e6))
    if t == "boolean":
        return bool(vi % 2)
    lo, hi = INT_RANGES[t]
    choices = (lo, hi, 0, 1, hi - 1, min(hi, 255), min(hi, 7), int(rng.integers(lo, hi, endpoint=True)))
    v = choices[vi % len(choices)]
    return bytes([v % 256]) if t in ("byte", "octet") else v


def _set(owner, field: str, value) -> bool:
    try:
        setattr(owner, field, value)
        return True
    except (AssertionError, TypeError, ValueError, OverflowError):
        return False


def _resized_sequence(value, elem: str, op: int, vi: int, rng):
    items = list(value)
    n = len(items)
    mode = op % 6
    if mode == 0:
        new = []
    elif mode == 1:
        new = items[:1]
    elif mode == 2:
        new = items[:-1] if n else items
    elif mode == 3:                      # grown: mismatched against its sibling arrays
        extra = 1 + vi % 5
        new = items + ([items[-1]] * extra if n else [])
    elif mode == 4:                      # huge
        if _is_basic(elem) and elem != "boolean":
            size = HUGE_SEQUENCE // (1 + vi % 4)
            dt = FLOAT_TYPES.get(elem)
            if dt is not None:
                arr = rng.normal(0, 1e3, size).astype(dt)
                arr[rng.random(size) < 0.1] = np.nan
                return array.array(ARRAY_CODES[elem], arr.tobytes())
            lo, hi = INT_RANGES[elem]
            return array.array(ARRAY_CODES[elem], rng.integers(lo, hi, size, endpoint=True,
                                                              dtype=np.int64 if lo < 0 else np.uint64)
                               .astype(np.dtype(ARRAY_CODES[elem])).tobytes())
        new = (items * (HUGE_MSG_SEQUENCE // max(n, 1) + 1))[:HUGE_MSG_SEQUENCE] if n else []
    else:                                # fresh random content of a random length
        return _random_sequence(elem, rng, int(rng.integers(0, 8)), depth=1)
    if _is_basic(elem) and elem != "boolean" and elem in ARRAY_CODES:
        return array.array(ARRAY_CODES[elem], new)
    return new


def mutate(msg, pi: int, op: int, vi: int, rng) -> str:
    """Change one leaf of ``msg`` (chosen by ``pi``) to a bad value; returns what was done."""
    places = leaves(msg)
    owner, field, t, where = places[pi % len(places)]
    seq, fixed = _SEQ.match(t), _FIXED.match(t)
    if seq:
        value = _resized_sequence(getattr(owner, field), seq.group(1), op, vi, rng)
        ok = _set(owner, field, value)
        return f"{where}: len {len(value)}" + ("" if ok else " (rejected)")
    if fixed:
        elem, size = fixed.group(1), int(fixed.group(2))
        if elem in FLOAT_TYPES:
            arr = np.asarray(getattr(owner, field), dtype=FLOAT_TYPES[elem]).copy()
            arr[op % size] = BAD_FLOATS[vi % len(BAD_FLOATS)]
            if vi % 3 == 0:
                arr[:] = BAD_FLOATS[vi % len(BAD_FLOATS)]
            _set(owner, field, arr)
            return f"{where}: {arr[op % size]}"
        return f"{where}: kept"
    if _is_string(t):
        value = BAD_STRINGS[vi % len(BAD_STRINGS)]
        _set(owner, field, value)
        return f"{where}: {value[:20]!r}"
    if _is_basic(t):
        value = _bad_scalar(t, vi + op, rng)
        if not _set(owner, field, value) and t == "float":
            _set(owner, field, math.nan)
        return f"{where}: {value!r}"
    # a nested message: reset to its defaults (a zero stamp, an identity-less quaternion, ...)
    _set(owner, field, _msg_class(t)())
    return f"{where}: default"


# ------------------------------------------------------------------------------------ random messages
def _random_scalar(t: str, rng):
    if t in FLOAT_TYPES:
        if rng.random() < 0.3:
            return BAD_FLOATS[int(rng.integers(len(BAD_FLOATS)))]
        v = float(rng.normal(0, 100))
        return float(np.float32(v)) if t == "float" else v
    if t == "boolean":
        return bool(rng.integers(2))
    lo, hi = INT_RANGES[t]
    v = int(rng.integers(lo, hi, endpoint=True, dtype=np.int64 if lo < 0 else np.uint64))
    return bytes([v % 256]) if t in ("byte", "octet") else v


def _random_sequence(elem: str, rng, n: int, depth: int):
    if elem in FLOAT_TYPES:
        arr = rng.normal(0, 100, n).astype(FLOAT_TYPES[elem])
        arr[rng.random(n) < 0.2] = np.nan
        return array.array(ARRAY_CODES[elem], arr.tobytes())
    if elem in ARRAY_CODES:
        lo, hi = INT_RANGES[elem]
        vals = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64 if lo < 0 else np.uint64)
        return array.array(ARRAY_CODES[elem], vals.astype(np.dtype(ARRAY_CODES[elem])).tobytes())
    if elem == "boolean":
        return [bool(b) for b in rng.integers(0, 2, n)]
    if _is_string(elem):
        return [BAD_STRINGS[int(i)] for i in rng.integers(0, len(BAD_STRINGS), n)]
    cls = _msg_class(elem)
    return [random_message(cls, rng, depth + 1) for _ in range(n)]


def random_message(cls, rng, depth: int):
    """An instance of ``cls`` with every field random (sequences of 0-5 elements; deeper levels shorter)."""
    msg = cls()
    for field, t in cls.get_fields_and_field_types().items():
        seq, fixed = _SEQ.match(t), _FIXED.match(t)
        if seq:
            n = int(rng.integers(0, 6 if depth < 2 else 2))
            if seq.group(2):
                n = min(n, int(seq.group(2)))
            value = _random_sequence(seq.group(1), rng, n, depth)
        elif fixed:
            elem, size = fixed.group(1), int(fixed.group(2))
            if elem not in FLOAT_TYPES:
                continue
            arr = rng.normal(0, 100, size).astype(FLOAT_TYPES[elem])
            arr[rng.random(size) < 0.3] = np.nan
            value = arr
        elif _is_string(t):
            value = BAD_STRINGS[int(rng.integers(len(BAD_STRINGS)))]
        elif _is_basic(t):
            value = _random_scalar(t, rng)
        else:
            value = random_message(_msg_class(t), rng, depth + 1)
        _set(msg, field, value)
    return msg


# ------------------------------------------------------------------------------------ layouts
def _u32(v: int) -> int:
    """A uint32 field's value (the layouts compute some from others: keep them serialisable)."""
    return min(max(int(v), 0), 2 ** 32 - 1)


def _cloud_layout(rng, msg, ops):
    """A PointCloud2 whose layout is inconsistent (one or more defects of ``ops``)."""
    from sensor_msgs.msg import PointField

    n_valid = max(msg.width * msg.height, 1)
    done = []
    for _, op, vi in ops:
        defect = op % 14
        if defect == 0:      # point_step smaller than the fields / zero
            msg.point_step = [0, 1, 4, 11][vi % 4]
        elif defect == 1:    # row_step inconsistent with width * point_step
            msg.row_step = _u32([0, msg.row_step + 1, msg.row_step // 2, 2 ** 32 - 1][vi % 4])
        elif defect == 2:    # data length not width * height * point_step
            cut = int(rng.integers(1, max(len(msg.data), 2)))
            msg.data = bytes(msg.data)[:-cut] if vi % 2 else bytes(msg.data) + bytes(cut % 97 + 1)
        elif defect == 3:    # missing fields
            keep = [f for f in msg.fields if f.name not in (("x",), ("y", "z"), ("intensity",), ("x", "y", "z"))[vi % 4]]
            msg.fields = keep
        elif defect == 4:    # wrong / unknown datatypes
            dt = [0, 1, 2, 3, 4, 5, 6, 8, 9, 77][vi % 10]
            for f in msg.fields:
                if f.name in ("x", "intensity")[vi % 2:vi % 2 + 1] or vi % 3 == 0:
                    f.datatype = dt
        elif defect == 5:    # offsets beyond the point / overlapping
            for f in msg.fields:
                f.offset = _u32([msg.point_step, 2 ** 31, 0, msg.point_step - 1][vi % 4] if f.name != "x" or vi % 2 else 0)
        elif defect == 6:    # count != 1
            for f in msg.fields:
                f.count = [0, 3, 2 ** 32 - 1][vi % 3]
        elif defect == 7:    # width/height not matching the data
            msg.width, msg.height = (_u32(v) for v in [(0, 0), (n_valid + 7, 1), (n_valid, 3),
                                                        (2 ** 32 - 1, 2 ** 32 - 1)][vi % 4])
        elif defect == 8:    # big-endian flag on little-endian data
            msg.is_bigendian = True
        elif defect == 9:    # duplicate field names
            msg.fields = list(msg.fields) + [PointField(name="x", offset=4, datatype=PointField.FLOAT32, count=1)]
        elif defect == 10:   # a few MB of points, NaN/inf sprinkled
            pts = rng.normal(0, 30, (MAX_BYTES // 16 // (1 + vi % 4), 4)).astype(np.float32)
            pts[rng.random(pts.shape) < 0.05] = [np.nan, np.inf, -np.inf][vi % 3]
            msg.data = pts.tobytes()
            msg.width, msg.height, msg.point_step, msg.row_step = len(pts), 1, 16, 16 * len(pts)
        elif defect == 11:   # every coordinate NaN/inf, is_dense claimed
            raw = bytes(msg.data)
            pts = np.frombuffer(raw[: len(raw) // 4 * 4], np.float32).copy()
            pts[:] = [np.nan, np.inf, -np.inf, 1e30][vi % 4]
            msg.data = pts.tobytes()
            msg.is_dense = True
        elif defect == 12:   # no points at all, header intact
            msg.data, msg.width, msg.row_step = b"", 0, 0
        else:                # random bytes in a plausible layout
            msg.data = rng.integers(0, 256, len(msg.data), dtype=np.uint8).tobytes()
        done.append(defect)
    return msg, f"cloud layout defects {done}"


def _image_layout(rng, msg, ops):
    """An Image whose size/step/encoding/data disagree (one or more defects of ``ops``)."""
    done = []
    for _, op, vi in ops:
        defect = op % 10
        if defect == 0:
            msg.step = _u32([0, msg.step - 1, msg.step + 1, 2 ** 32 - 1][vi % 4])
        elif defect == 1:
            msg.encoding = ["", "mono8", "rgb16", "32FC1", "bgr8", "rgba8", "bgra8", "yuv422", "bayer_rggb8",
                            "RGB8", "weird"][vi % 11]
        elif defect == 2:
            cut = int(rng.integers(1, max(len(msg.data), 2)))
            msg.data = bytes(msg.data)[:-cut] if vi % 2 else bytes(msg.data) + bytes(cut % 101 + 1)
        elif defect == 3:
            msg.width, msg.height = (_u32(v) for v in [(0, 0), (1, 1), (msg.width * 2, msg.height),
                                                        (2 ** 32 - 1, 2 ** 32 - 1), (msg.width, 0)][vi % 5])
        elif defect == 4:
            msg.is_bigendian = int(1 + vi % 254)
        elif defect == 5:    # a few MB, consistent with itself but not the camera
            w = 1024 + 16 * (vi % 32)
            h = min(MAX_BYTES // (3 * w), 1200)
            msg.width, msg.height, msg.step = w, h, 3 * w
            msg.data = rng.integers(0, 256, 3 * w * h, dtype=np.uint8).tobytes()
        elif defect == 6:
            msg.data = b""
        elif defect == 7:    # four channels claimed, three given
            msg.encoding = "bgra8"
        elif defect == 8:    # 16-bit encoding with 8-bit data
            msg.encoding, msg.step = "rgb16", msg.step
        else:
            msg.data = rng.integers(0, 256, len(msg.data), dtype=np.uint8).tobytes()
        done.append(defect)
    return msg, f"image layout defects {done}"


LAYOUTS = {"PointCloud2": _cloud_layout, "Image": _image_layout}
