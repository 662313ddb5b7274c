"""``sensor_msgs/PointCloud2`` and ``sensor_msgs/Image`` <-> numpy, with no per-point Python loop.

The only module of :mod:`tps_inference` that touches message types. Everything is vectorised: a
message's ``data`` buffer is reinterpreted in place with a numpy dtype built from the message's own
layout description (``fields``/``point_step``/``row_step`` or ``encoding``/``step``), so a
conversion costs at most one memcpy and often nothing (a zero-copy view).

Point clouds
    :func:`pointcloud2_to_array` returns a numpy *structured* array with one named field per
    ``PointField`` (``count > 1`` becomes a sub-array field of that length). Field dtypes carry the
    message's byte order (``>f4`` for a big-endian cloud), so values read correctly on any host.
    Unorganised clouds (``height == 1``) have shape ``(width,)``; organised clouds keep
    ``(height, width)``. Where ``row_step == width * point_step`` the result is a zero-copy view of
    ``msg.data``; with row padding it is a zero-copy strided view too.
    :func:`pointcloud2_to_xyzi` is the lidar hot path: a contiguous float32 ``(N, 4)`` array of
    x, y, z, intensity in metres (and the driver's intensity unit).
    :func:`array_to_pointcloud2` / :func:`xyzi_to_pointcloud2` go the other way; ``msg.data`` is
    filled from one ``array.array('B')`` (assigning a Python list would check every byte in Python).

Images
    :func:`image_to_array` returns ``(height, width)`` for one-channel encodings and
    ``(height, width, channels)`` otherwise; a zero-copy (strided, when ``step`` is padded) view
    whose dtype carries the byte order given by ``is_bigendian``.
    :func:`array_to_image` is the reverse. Encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16,
    rgb16, bgr16, rgba16, bgra16 and the OpenCV-style ``{8,16,32,64}{U,S,F}C{1..4}``
    (e.g. 16UC1, 32FC1).

Malformed input raises :class:`ConversionError` (the one documented error type) with a message
naming the problem: data length not matching ``row_step * height`` (``step * height``), a row
shorter than its points, unknown PointField datatypes or image encodings, missing x/y/z,
overlapping fields, fields that run past ``point_step``.
"""

from __future__ import annotations

import array
import re
import sys
from collections.abc import Sequence

import numpy as np
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from .errors import ConversionError

__all__ = [
    "ConversionError",
    "IMAGE_ENCODINGS",
    "POINTFIELD_DTYPES",
    "array_to_image",
    "array_to_pointcloud2",
    "cloud_dtype",
    "image_to_array",
    "pointcloud2_to_array",
    "pointcloud2_to_xyzi",
    "xyzi_to_pointcloud2",
]

#: PointField datatype constant -> numpy type code (byte order added per message).
POINTFIELD_DTYPES: dict[int, str] = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}
_DTYPE_TO_POINTFIELD: dict[str, int] = {code: dt for dt, code in POINTFIELD_DTYPES.items()}
_POINTFIELD_NAMES = {
    PointField.INT8: "INT8", PointField.UINT8: "UINT8", PointField.INT16: "INT16",
    PointField.UINT16: "UINT16", PointField.INT32: "INT32", PointField.UINT32: "UINT32",
    PointField.FLOAT32: "FLOAT32", PointField.FLOAT64: "FLOAT64",
}

_NATIVE_BIG = sys.byteorder == "big"


def _build_image_encodings() -> dict[str, tuple[str, int]]:
    enc = {
        "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
        "mono8": ("u1", 1), "mono16": ("u2", 1),
        "rgb16": ("u2", 3), "bgr16": ("u2", 3), "rgba16": ("u2", 4), "bgra16": ("u2", 4),
    }
    for bits, kinds in ((8, "US"), (16, "US"), (32, "SF"), (64, "F")):
        for kind in kinds:
            code = {"U": "u", "S": "i", "F": "f"}[kind] + str(bits // 8)
            for ch in range(1, 5):
                enc[f"{bits}{kind}C{ch}"] = (code, ch)
    return enc


#: Image encoding -> (numpy type code without byte order, channels).
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = _build_image_encodings()
_CV_ENCODING = re.compile(r"^(8|16|32|64)([USF])C(\d+)$")


# ----------------------------------------------------------------------------------------------
# helpers


def _data_bytes(data) -> np.ndarray:
    """``msg.data`` as a 1-D uint8 array, without copying where the object exports a buffer.

    A deserialised message holds an ``array.array('B')``; hand-built ones may hold bytes,
    bytearray, memoryview, a numpy array or (slowly) a list of ints.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ConversionError(f"msg.data must be a 1-D uint8 buffer, got ndarray {data.dtype} {data.shape}")
        return data
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass
    try:
        out = np.asarray(data, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"msg.data is not a byte buffer ({type(data).__name__}): {exc}") from exc
    if out.ndim != 1 or (out.size and (out.min() < 0 or out.max() > 255)):
        raise ConversionError("msg.data must be a sequence of bytes (ints in 0..255)")
    return out.astype(np.uint8)


def _byte_order(is_bigendian) -> str:
    if isinstance(is_bigendian, bool) or is_bigendian in (0, 1):
        return ">" if is_bigendian else "<"
    raise ConversionError(f"is_bigendian must be 0/1 (or a bool), got {is_bigendian!r}")


def cloud_dtype(fields: Sequence, point_step: int, is_bigendian: bool | int = False) -> np.dtype:
    """The numpy structured dtype (itemsize ``point_step``) that one point of a cloud occupies.

    Args:
        fields: ``PointField``-like objects (``name``, ``offset`` [bytes], ``datatype``, ``count``).
        point_step: bytes per point, padding included.
        is_bigendian: byte order of every multi-byte field.

    Raises:
        ConversionError: empty/duplicate field names, unknown datatype, ``count < 1``, a field that
            runs past ``point_step``, or two fields that overlap.
    """
    order = _byte_order(is_bigendian)
    if point_step < 0:
        raise ConversionError(f"point_step must be >= 0, got {point_step}")
    names: list[str] = []
    formats: list = []
    offsets: list[int] = []
    extents: list[tuple[int, int, str]] = []
    for f in fields:
        name = f.name
        if not isinstance(name, str) or not name:
            raise ConversionError(f"PointField with empty or non-string name {name!r}")
        if name in names:
            raise ConversionError(f"PointField name '{name}' appears more than once")
        if f.datatype not in POINTFIELD_DTYPES:
            raise ConversionError(
                f"field '{name}' has unknown PointField datatype {f.datatype} (expected 1..8, INT8..FLOAT64)"
            )
        if f.count < 1:
            raise ConversionError(f"field '{name}' has count {f.count}; count must be >= 1")
        if f.offset < 0:
            raise ConversionError(f"field '{name}' has negative offset {f.offset}")
        code = POINTFIELD_DTYPES[f.datatype]
        size = int(code[1]) * f.count
        end = f.offset + size
        if end > point_step:
            raise ConversionError(
                f"field '{name}' (offset {f.offset}, {size} bytes: {_POINTFIELD_NAMES[f.datatype]} x {f.count})"
                f" runs past point_step {point_step}"
            )
        base = np.dtype(order + code if code[1] != "1" else code)
        names.append(name)
        formats.append(base if f.count == 1 else (base, (f.count,)))
        offsets.append(int(f.offset))
        extents.append((int(f.offset), end, name))
    extents.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(extents, extents[1:], strict=False):
        if b0 < a1:
            raise ConversionError(
                f"fields '{an}' (bytes {a0}..{a1 - 1}) and '{bn}' (bytes {b0}..{b1 - 1}) overlap"
            )
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})
    except ValueError as exc:   # point_step/offset/count past a C int (found by tests/fuzz: killed the fallback)
        raise ConversionError(f"unusable field layout (point_step {point_step}): {exc}") from exc


def _cloud_view(msg: PointCloud2, require_xyz: bool) -> np.ndarray:
    """Validated ``(height, width)`` structured view of a cloud's data (zero-copy)."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    dtype = cloud_dtype(msg.fields, point_step, msg.is_bigendian)
    if require_xyz:
        missing = [n for n in ("x", "y", "z") if n not in dtype.names]
        if missing:
            raise ConversionError(f"PointCloud2 has no field(s) {missing}; fields are {list(dtype.names)}")
    buf = _data_bytes(msg.data)
    n_points = height * width
    if n_points and point_step == 0:
        raise ConversionError(f"point_step is 0 for a cloud of {width}x{height} points")
    if n_points and row_step < width * point_step:
        raise ConversionError(
            f"row_step {row_step} is smaller than width*point_step = {width}*{point_step} = {width * point_step}"
        )
    expected = row_step * height
    if buf.size != expected:
        raise ConversionError(
            f"PointCloud2 data has {buf.size} bytes; expected row_step*height = {row_step}*{height} = {expected}"
        )
    if n_points == 0:
        return np.zeros((height, width), dtype=dtype)
    if row_step == width * point_step:
        return buf.view(dtype).reshape(height, width)
    return np.ndarray(shape=(height, width), dtype=dtype, buffer=buf, strides=(row_step, point_step))


# ----------------------------------------------------------------------------------------------
# PointCloud2 -> numpy


def pointcloud2_to_array(msg: PointCloud2, *, require_xyz: bool = True) -> np.ndarray:
    """A ``PointCloud2`` as a numpy structured array, one named field per ``PointField``.

    Args:
        msg: the cloud. Any layout: field offsets/padding, ``point_step``/``row_step`` padding,
            either endianness, INT8..FLOAT64, ``count > 1``.
        require_xyz: raise if the cloud lacks an x, y or z field (default; a point cloud without
            coordinates is malformed for this stack). Pass False for auxiliary clouds.

    Returns:
        Shape ``(width,)`` when ``height == 1`` and ``(height, width)`` otherwise. A zero-copy view of
        ``msg.data`` (writes go through to the message); dtype byte order follows ``is_bigendian``.
        NaNs of a non-dense cloud are kept as they are.

    Raises:
        ConversionError: the message is malformed (see module docstring).
    """
    view = _cloud_view(msg, require_xyz)
    return view[0] if view.shape[0] == 1 else view


def _consecutive_float32(dtype: np.dtype, names: Sequence[str]) -> int | None:
    """Offset of ``names`` if they are consecutive native float32 scalars in ``dtype``."""
    native = np.dtype("=f4")
    first = None
    for i, name in enumerate(names):
        fdt, off = dtype.fields[name][:2]
        if fdt != native:
            return None
        if first is None:
            first = off
        elif off != first + 4 * i:
            return None
    return first


def pointcloud2_to_xyzi(
    msg: PointCloud2,
    *,
    intensity_field: str | None = "intensity",
    skip_nonfinite: bool = False,
) -> np.ndarray:
    """The lidar hot path: x, y, z, intensity of every point as a contiguous float32 ``(N, 4)``.

    Args:
        msg: the cloud (any layout :func:`pointcloud2_to_array` accepts). Organised clouds are
            flattened row by row.
        intensity_field: name of the 4th column's field; ``None`` fills the column with 0.
        skip_nonfinite: drop points whose x, y or z is NaN/inf (``is_dense == false`` clouds).

    Returns:
        ``(N, 4)`` float32, C-contiguous, a new array (never a view of ``msg.data``); metres for x/y/z.
        Integer and float64 fields are cast; float64 values beyond the float32 range become +-inf.

    Raises:
        ConversionError: malformed message, missing x/y/z or intensity field, or a field with
            ``count > 1`` where a scalar is needed.
    """
    view = _cloud_view(msg, require_xyz=True)
    names = ["x", "y", "z"]
    if intensity_field is not None:
        if intensity_field not in view.dtype.names:
            raise ConversionError(
                f"PointCloud2 has no intensity field '{intensity_field}'; fields are {list(view.dtype.names)}"
                " (pass intensity_field=None to fill zeros)"
            )
        names.append(intensity_field)
    for name in names:
        if view.dtype.fields[name][0].shape:
            raise ConversionError(f"field '{name}' has count {view.dtype.fields[name][0].shape[0]}; expected 1")
    height, width = view.shape
    offset = _consecutive_float32(view.dtype, names)
    if offset is not None and len(names) == 4:
        # Common lidar layout: x, y, z, intensity as one 16-byte native float block per point.
        # Copying it as an opaque 16-byte item lets numpy memcpy whole points (~10x faster than
        # a float-by-float strided copy).
        block = np.dtype({"names": ["v"], "formats": ["V16"], "offsets": [offset], "itemsize": view.dtype.itemsize})
        out = np.empty((height, width), dtype="V16")
        out[...] = view.view(block)["v"]
        out = out.view(np.float32).reshape(height, width, 4)
    else:
        out = np.empty((height, width, 4), dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 range -> +-inf
            for k, name in enumerate(names):
                out[..., k] = view[name]  # casts (and byte-swaps) in C
    if intensity_field is None:
        out[..., 3] = 0.0
    out = out.reshape(height * width, 4)
    if skip_nonfinite:
        out = out[np.isfinite(out[:, :3]).all(axis=1)]
    return out


# ----------------------------------------------------------------------------------------------
# numpy -> PointCloud2


def _pointfield_for(name: str, fdt: np.dtype) -> tuple[int, int, np.dtype]:
    """(datatype, count, base dtype) of one structured-array field."""
    base, shape = fdt.base, fdt.shape
    if base.fields is not None or base.kind not in "iuf":
        raise ConversionError(f"field '{name}' has dtype {fdt} which no PointField datatype can hold")
    code = f"{base.kind}{base.itemsize}"
    if code not in _DTYPE_TO_POINTFIELD:
        raise ConversionError(f"field '{name}' has dtype {fdt} which no PointField datatype can hold")
    count = int(np.prod(shape)) if shape else 1
    if count < 1:
        raise ConversionError(f"field '{name}' has an empty sub-array shape {shape}")
    return _DTYPE_TO_POINTFIELD[code], count, base


def _is_big(dt: np.dtype) -> bool | None:
    """True/False for an explicit or native byte order; None for single-byte types."""
    if dt.itemsize == 1 or dt.byteorder == "|":
        return None
    if dt.byteorder == "=":
        return _NATIVE_BIG
    return dt.byteorder == ">"


def _to_byte_array(contiguous: np.ndarray) -> array.array:
    """One memcpy into the ``array.array('B')`` a message's uint8[] field stores natively."""
    out = array.array("B")
    out.frombytes(contiguous.reshape(-1).view(np.uint8))
    return out


def array_to_pointcloud2(
    arr: np.ndarray,
    header: Header | None = None,
    frame_id: str = "",
    *,
    is_bigendian: bool | None = None,
    is_dense: bool | None = None,
) -> PointCloud2:
    """A numpy structured array as a ``PointCloud2``.

    Args:
        arr: structured array, shape ``(N,)`` (unorganised) or ``(height, width)`` (organised).
            Field offsets and the dtype's itemsize become ``PointField.offset`` and ``point_step``,
            so padding is preserved; sub-array fields become ``count > 1``.
        header: copied into the message (default: an empty header).
        frame_id: if non-empty, overrides ``header.frame_id``.
        is_bigendian: byte order of the message; default: the array's own (native if mixed).
        is_dense: default: True iff every floating-point field of every point is finite.

    Returns:
        The message; ``row_step = width * point_step`` (no row padding).

    Raises:
        ConversionError: not a structured array, unsupported field dtype, or rank not 1 or 2.
    """
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise ConversionError(
            f"array_to_pointcloud2 needs a numpy structured array, got {type(arr).__name__}"
            f"{' ' + str(arr.dtype) if isinstance(arr, np.ndarray) else ''}; use xyzi_to_pointcloud2 for (N, 4) floats"
        )
    if arr.ndim == 1:
        height, width = 1, arr.shape[0]
    elif arr.ndim == 2:
        height, width = arr.shape
    else:
        raise ConversionError(f"point array must have shape (N,) or (height, width), got {arr.shape}")
    dtype = arr.dtype
    fields, orders = [], set()
    for name in dtype.names:
        fdt, offset = dtype.fields[name][:2]
        datatype, count, base = _pointfield_for(name, fdt)
        fields.append(PointField(name=name, offset=int(offset), datatype=datatype, count=count))
        big = _is_big(base)
        if big is not None:
            orders.add(big)
    cloud_dtype(fields, dtype.itemsize)  # same layout rules as on the way in (e.g. no overlapping fields)
    if is_bigendian is None:
        is_bigendian = next(iter(orders)) if len(orders) == 1 else _NATIVE_BIG
    target = "<>"[bool(is_bigendian)]
    if orders and orders != {bool(is_bigendian)}:
        # Re-encode field by field into a zeroed buffer (zeroed: padding must not leak garbage).
        formats = []
        for name in dtype.names:
            fdt = dtype.fields[name][0]
            base = fdt.base.newbyteorder(target) if fdt.base.itemsize > 1 else fdt.base
            formats.append(base if not fdt.shape else (base, fdt.shape))
        new_dtype = np.dtype({"names": list(dtype.names), "formats": formats,
                              "offsets": [dtype.fields[n][1] for n in dtype.names], "itemsize": dtype.itemsize})
        converted = np.zeros(arr.shape, dtype=new_dtype)
        for name in dtype.names:
            converted[name] = arr[name]
        arr = converted
    elif not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if is_dense is None:
        floats = [n for n in dtype.names if dtype.fields[n][0].base.kind == "f"]
        is_dense = all(bool(np.isfinite(arr[n]).all()) for n in floats)
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    if frame_id:
        msg.header.frame_id = frame_id
    msg.height, msg.width = int(height), int(width)
    msg.fields = fields
    msg.is_bigendian = bool(is_bigendian)
    msg.point_step = int(dtype.itemsize)
    msg.row_step = int(dtype.itemsize * width)
    msg.is_dense = bool(is_dense)
    msg.data = _to_byte_array(arr)
    return msg


_XYZI_FIELDS = ("x", "y", "z", "intensity")


def xyzi_to_pointcloud2(
    points: np.ndarray,
    header: Header | None = None,
    frame_id: str = "",
    *,
    is_dense: bool | None = None,
) -> PointCloud2:
    """An ``(N, 4)`` (x, y, z, intensity) or ``(N, 3)`` array as the stack's lidar layout.

    Layout: x, y, z[, intensity] float32 at offsets 0, 4, 8[, 12], point_step 12 or 16,
    little-endian on little-endian hosts (native order), unorganised. ``is_dense`` defaults to
    True iff every value (intensity included) is finite.

    Raises:
        ConversionError: not a 2-D array with 3 or 4 columns of real numbers.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4) or pts.dtype.kind not in "iuf":
        raise ConversionError(f"xyzi_to_pointcloud2 needs an (N, 3) or (N, 4) numeric array, got {pts.dtype} {pts.shape}")
    pts = np.ascontiguousarray(pts, dtype=np.float32)
    k = pts.shape[1]
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    if frame_id:
        msg.header.frame_id = frame_id
    msg.height, msg.width = 1, int(pts.shape[0])
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(_XYZI_FIELDS[:k])]
    msg.is_bigendian = _NATIVE_BIG
    msg.point_step = 4 * k
    msg.row_step = 4 * k * int(pts.shape[0])
    msg.is_dense = bool(np.isfinite(pts).all()) if is_dense is None else bool(is_dense)
    msg.data = _to_byte_array(pts)
    return msg


# ----------------------------------------------------------------------------------------------
# Image


def _encoding_info(encoding: str) -> tuple[np.dtype, int]:
    info = IMAGE_ENCODINGS.get(encoding)
    if info is None:
        match = _CV_ENCODING.match(encoding or "")
        hint = " (channel count must be 1..4)" if match else ""
        raise ConversionError(
            f"unknown image encoding '{encoding}'{hint}; supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16, "
            "rgb16, bgr16, rgba16, bgra16, {8,16}{U,S}C{1..4}, 32{S,F}C{1..4}, 64FC{1..4}"
        )
    code, channels = info
    return np.dtype(code), channels


def image_to_array(msg: Image) -> np.ndarray:
    """A ``sensor_msgs/Image`` as numpy, zero-copy.

    Returns:
        ``(height, width)`` for one channel, ``(height, width, channels)`` otherwise, in the
        encoding's channel order (rgb8 stays RGB, bgra8 stays BGRA). A (strided, if ``step`` is
        padded) view of ``msg.data``; multi-byte dtypes carry the byte order of ``is_bigendian``.

    Raises:
        ConversionError: unknown encoding, ``step`` shorter than a row, data length not equal to
            ``step * height``, ``is_bigendian`` not 0/1.
    """
    base, channels = _encoding_info(msg.encoding)
    order = _byte_order(msg.is_bigendian)
    dtype = base.newbyteorder(order) if base.itemsize > 1 else base
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * base.itemsize
    buf = _data_bytes(msg.data)
    if height and step < row_bytes:
        raise ConversionError(
            f"image step {step} is smaller than width*channels*bytes = {width}*{channels}*{base.itemsize}"
            f" = {row_bytes} for encoding '{msg.encoding}'"
        )
    if buf.size != step * height:
        raise ConversionError(f"image data has {buf.size} bytes; expected step*height = {step}*{height} = {step * height}")
    shape = (height, width, channels)
    if height * width == 0:
        out = np.zeros(shape, dtype=dtype)
    else:
        out = np.ndarray(shape=shape, dtype=dtype, buffer=buf,
                         strides=(step, channels * base.itemsize, base.itemsize))
    return out[..., 0] if channels == 1 else out


def array_to_image(
    arr: np.ndarray,
    encoding: str,
    header: Header | None = None,
    frame_id: str = "",
) -> Image:
    """A numpy image as ``sensor_msgs/Image`` (``step = width * channels * bytes``, no padding).

    Args:
        arr: ``(height, width)`` or ``(height, width, 1)`` for one channel, ``(height, width, C)``
            otherwise; its dtype must be the encoding's (no silent casting); byte order free.
        encoding: one of :data:`IMAGE_ENCODINGS`.
        header: copied into the message; ``frame_id`` if non-empty overrides its frame.

    Raises:
        ConversionError: unknown encoding, wrong dtype, or shape not matching the channel count.
    """
    base, channels = _encoding_info(encoding)
    if not isinstance(arr, np.ndarray):
        raise ConversionError(f"array_to_image needs a numpy array, got {type(arr).__name__}")
    if arr.dtype.kind != base.kind or arr.dtype.itemsize != base.itemsize:
        raise ConversionError(f"encoding '{encoding}' needs {base.name} pixels, got {arr.dtype}")
    if arr.ndim == 2 and channels == 1:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise ConversionError(
            f"encoding '{encoding}' needs shape (height, width{'' if channels == 1 else f', {channels}'}),"
            f" got {arr.shape}"
        )
    big = _is_big(arr.dtype)
    msg = Image()
    if header is not None:
        msg.header = header
    if frame_id:
        msg.header.frame_id = frame_id
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(bool(big))
    msg.step = int(arr.shape[1] * channels * base.itemsize)
    msg.data = _to_byte_array(np.ascontiguousarray(arr))
    return msg
