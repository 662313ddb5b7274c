"""PointCloud2 / Image <-> numpy: property tests against an independent struct-based decoder.

Messages are built byte by byte from random layouts (field order, gaps, datatypes, counts,
point_step and row_step padding, endianness, organised clouds, random payload bytes -- so NaNs,
infs and denormals appear naturally), then checked against ``struct.unpack`` per point and round
tripped through the real CDR serialiser.
"""

from __future__ import annotations

import array
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, PointCloud2, PointField
from tps_inference.conversions import (
    ConversionError,
    array_to_image,
    array_to_pointcloud2,
    image_to_array,
    pointcloud2_to_array,
    pointcloud2_to_xyzi,
    xyzi_to_pointcloud2,
)
from tps_inference.errors import ConversionError as ErrorsConversionError

MAX_EXAMPLES = 120
SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STRUCT_CODES = {PointField.INT8: "b", PointField.UINT8: "B", PointField.INT16: "h", PointField.UINT16: "H",
                PointField.INT32: "i", PointField.UINT32: "I", PointField.FLOAT32: "f", PointField.FLOAT64: "d"}
SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}
LISTED_ENCODINGS = {"rgb8": ("B", 3, 1), "bgr8": ("B", 3, 1), "rgba8": ("B", 4, 1), "bgra8": ("B", 4, 1),
                    "mono8": ("B", 1, 1), "mono16": ("H", 1, 2), "16UC1": ("H", 1, 2), "32FC1": ("f", 1, 4)}


# ------------------------------------------------------------------------------------------------
# independent reference decoder + random layouts


def reference_decode(msg: PointCloud2) -> dict[str, np.ndarray]:
    """Per point, per field struct.unpack: {name: array of shape (height, width[, count])}."""
    endian = ">" if msg.is_bigendian else "<"
    data = bytes(msg.data)
    out = {}
    for f in msg.fields:
        fmt = endian + STRUCT_CODES[f.datatype] * f.count
        vals = [[struct.unpack_from(fmt, data, r * msg.row_step + c * msg.point_step + f.offset)
                 for c in range(msg.width)] for r in range(msg.height)]
        arr = np.array(vals, dtype=np.float64 if f.datatype >= 7 else np.int64).reshape(msg.height, msg.width, f.count)
        out[f.name] = arr[..., 0] if f.count == 1 else arr
    return out


@st.composite
def cloud_layouts(draw, require_xyzi: bool = False):
    """A random, valid PointCloud2 built byte by byte."""
    names = ["x", "y", "z"] + (["intensity"] if require_xyzi else [])
    extra = draw(st.lists(st.sampled_from(["ring", "time", "rgb", "label", "normal", "t2"]), max_size=3, unique=True))
    names += extra
    fields = []
    for name in names:
        datatype = draw(st.integers(1, 8) if name not in ("x", "y", "z", "intensity")
                        else st.sampled_from([PointField.FLOAT32, PointField.FLOAT64, PointField.INT16]))
        count = 1 if name in ("x", "y", "z", "intensity") else draw(st.integers(1, 3))
        fields.append([name, datatype, count])
    order = draw(st.permutations(range(len(fields))))
    offset = 0
    pfs = []
    for i in order:
        name, datatype, count = fields[i]
        offset += draw(st.integers(0, 5))  # gap (padding) before the field, may be unaligned
        pfs.append(PointField(name=name, offset=offset, datatype=datatype, count=count))
        offset += SIZES[datatype] * count
    point_step = offset + draw(st.integers(0, 7))
    height = draw(st.integers(1, 4))
    width = draw(st.integers(0, 6))
    row_step = width * point_step + draw(st.sampled_from([0, 0, 1, 3, 16]))
    payload = draw(st.binary(min_size=row_step * height, max_size=row_step * height))
    msg = PointCloud2()
    msg.height, msg.width = height, width
    msg.fields = pfs
    msg.is_bigendian = draw(st.booleans())
    msg.point_step, msg.row_step = point_step, row_step
    msg.is_dense = False
    msg.data = array.array("B", payload)
    return msg


def assert_fields_equal(arr: np.ndarray, ref: dict[str, np.ndarray], shape: tuple[int, ...]) -> None:
    assert arr.shape == shape
    for name, expected in ref.items():
        got = np.asarray(arr[name]).reshape(expected.shape)
        with np.errstate(invalid="ignore"):  # NaN comparisons inside assert_array_equal
            np.testing.assert_array_equal(got.astype(expected.dtype), expected, err_msg=f"field {name}")


# ------------------------------------------------------------------------------------------------
# PointCloud2


@SETTINGS
@given(msg=cloud_layouts())
def test_pointcloud2_to_array_matches_struct_decoder(msg):
    arr = pointcloud2_to_array(msg)
    shape = (msg.width,) if msg.height == 1 else (msg.height, msg.width)
    assert_fields_equal(arr, reference_decode(msg), shape)
    assert arr.dtype.itemsize == msg.point_step
    assert list(arr.dtype.names) == [f.name for f in msg.fields]


@SETTINGS
@given(msg=cloud_layouts())
def test_pointcloud2_round_trip_through_cdr(msg):
    received = deserialize_message(serialize_message(msg), PointCloud2)
    arr = pointcloud2_to_array(received)
    back = array_to_pointcloud2(arr, received.header, is_bigendian=bool(received.is_bigendian))
    assert (back.height, back.width, back.point_step) == (msg.height, msg.width, msg.point_step)
    assert back.row_step == msg.width * msg.point_step  # row padding is not reproduced
    assert [(f.name, f.offset, f.datatype, f.count) for f in back.fields] == \
           [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    again = deserialize_message(serialize_message(back), PointCloud2)
    shape = (msg.width,) if msg.height == 1 else (msg.height, msg.width)
    assert_fields_equal(pointcloud2_to_array(again), reference_decode(msg), shape)


@SETTINGS
@given(msg=cloud_layouts(), flip=st.booleans())
def test_array_to_pointcloud2_can_change_byte_order(msg, flip):
    target = bool(msg.is_bigendian) ^ flip
    back = array_to_pointcloud2(pointcloud2_to_array(msg), is_bigendian=target)
    assert bool(back.is_bigendian) == target
    shape = (msg.width,) if msg.height == 1 else (msg.height, msg.width)
    assert_fields_equal(pointcloud2_to_array(back), reference_decode(msg), shape)


@SETTINGS
@given(msg=cloud_layouts(require_xyzi=True))
def test_pointcloud2_to_xyzi_matches_struct_decoder(msg):
    ref = reference_decode(msg)
    with np.errstate(over="ignore", invalid="ignore"):  # float64 payloads beyond float32 range -> inf
        expected = np.stack([ref[n] for n in ("x", "y", "z", "intensity")], axis=-1).reshape(-1, 4).astype(np.float32)
    out = pointcloud2_to_xyzi(msg)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (msg.height * msg.width, 4)
    np.testing.assert_array_equal(out, expected)
    dense = pointcloud2_to_xyzi(msg, skip_nonfinite=True)
    np.testing.assert_array_equal(dense, expected[np.isfinite(expected[:, :3]).all(axis=1)])
    no_i = pointcloud2_to_xyzi(msg, intensity_field=None)
    np.testing.assert_array_equal(no_i[:, :3], expected[:, :3])
    assert not no_i[:, 3].any()


def lidar_cloud(n: int, nan_every: int = 0) -> np.ndarray:
    """The driver layout of the benchmark: xyz+intensity f32, ring u16, time f64, point_step 32."""
    dt = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                   "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"],
                   "offsets": [0, 4, 8, 12, 16, 24], "itemsize": 32})
    rng = np.random.default_rng(3)
    cloud = np.zeros(n, dtype=dt)
    for name in ("x", "y", "z", "intensity"):
        cloud[name] = rng.normal(size=n)
    cloud["ring"] = rng.integers(0, 64, n)
    cloud["time"] = rng.uniform(0, 0.1, n)
    if nan_every:
        cloud["x"][::nan_every] = np.nan
    return cloud


def test_lidar_fast_path_is_exact_and_view_is_zero_copy():
    cloud = lidar_cloud(1000, nan_every=7)
    msg = deserialize_message(serialize_message(array_to_pointcloud2(cloud, frame_id="lidar")), PointCloud2)
    assert msg.header.frame_id == "lidar" and msg.is_dense is False and msg.point_step == 32
    view = pointcloud2_to_array(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))
    out = pointcloud2_to_xyzi(msg)
    expected = np.stack([cloud[n] for n in ("x", "y", "z", "intensity")], axis=1)
    np.testing.assert_array_equal(out, expected)
    assert not np.shares_memory(out, view)
    assert pointcloud2_to_xyzi(msg, skip_nonfinite=True).shape == (1000 - len(range(0, 1000, 7)), 4)


def test_organised_cloud_keeps_shape_and_row_padding_view():
    cloud = lidar_cloud(12).reshape(3, 4)
    msg = array_to_pointcloud2(cloud)
    assert (msg.height, msg.width, msg.row_step) == (3, 4, 128)
    padded = bytearray()
    for r in range(3):
        padded += bytes(msg.data)[r * 128:(r + 1) * 128] + b"\xee" * 8
    msg.row_step, msg.data = 136, array.array("B", padded)
    arr = pointcloud2_to_array(msg)
    assert arr.shape == (3, 4)
    np.testing.assert_array_equal(arr["time"], cloud["time"])
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg)[:, 0], cloud["x"].reshape(-1))


def test_xyzi_to_pointcloud2_matches_contract_layout():
    pts = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    msg = xyzi_to_pointcloud2(pts, frame_id="ego_vehicle/lidar")
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 12, 7, 1)]
    assert (msg.point_step, msg.row_step, msg.is_dense) == (16, 800, True)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)
    pts[3, 1] = np.nan
    assert xyzi_to_pointcloud2(pts).is_dense is False
    pts[3, 1], pts[7, 3] = 0.0, np.inf
    assert xyzi_to_pointcloud2(pts).is_dense is False
    with pytest.raises(ConversionError, match=r"\(N, 3\) or \(N, 4\)"):
        xyzi_to_pointcloud2(np.zeros((5, 5)))


def test_is_dense_reflects_nans():
    cloud = lidar_cloud(20)
    assert array_to_pointcloud2(cloud).is_dense is True
    cloud["z"][4] = np.inf
    assert array_to_pointcloud2(cloud).is_dense is False
    cloud["z"][4] = 0.0
    cloud["intensity"][2] = np.nan
    assert array_to_pointcloud2(cloud).is_dense is False
    assert array_to_pointcloud2(cloud, is_dense=True).is_dense is True


def valid_msg() -> PointCloud2:
    return array_to_pointcloud2(lidar_cloud(10))


def with_fields(msg: PointCloud2, fields: list[tuple[str, int, int, int]]) -> PointCloud2:
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
    return msg


MALFORMED_CLOUDS = [
    ("short data", lambda m: setattr(m, "data", m.data[:-1]), r"data has 319 bytes; expected row_step\*height"),
    ("long data", lambda m: setattr(m, "data", m.data + array.array("B", [0] * 32)), r"expected row_step\*height"),
    ("row_step too small", lambda m: setattr(m, "row_step", 100), r"row_step 100 is smaller than width\*point_step"),
    ("zero point_step", lambda m: (setattr(m, "point_step", 0), with_fields(m, [])), r"no field|point_step is 0"),
    ("overlap", lambda m: with_fields(m, [("x", 0, 7, 1), ("y", 2, 7, 1), ("z", 8, 7, 1)]),
     r"fields 'x' \(bytes 0..3\) and 'y' \(bytes 2..5\) overlap"),
    ("unknown datatype", lambda m: with_fields(m, [("x", 0, 7, 1), ("y", 4, 9, 1), ("z", 8, 7, 1)]),
     r"field 'y' has unknown PointField datatype 9"),
    ("missing z", lambda m: with_fields(m, [("x", 0, 7, 1), ("y", 4, 7, 1)]), r"no field\(s\) \['z'\]"),
    ("past point_step", lambda m: with_fields(m, [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 28, 8, 1)]),
     r"field 'z' \(offset 28, 8 bytes: FLOAT64 x 1\) runs past point_step 32"),
    ("duplicate", lambda m: with_fields(m, [("x", 0, 7, 1), ("x", 4, 7, 1), ("z", 8, 7, 1)]),
     r"'x' appears more than once"),
    ("count zero", lambda m: with_fields(m, [("x", 0, 7, 1), ("y", 4, 7, 0), ("z", 8, 7, 1)]),
     r"field 'y' has count 0"),
    ("bad is_bigendian type", lambda m: setattr(m, "_is_bigendian", 5), r"is_bigendian must be 0/1"),
]


@pytest.mark.parametrize("case, corrupt, message", MALFORMED_CLOUDS, ids=[c[0] for c in MALFORMED_CLOUDS])
def test_malformed_pointcloud2_raises_conversion_error(case, corrupt, message):
    msg = valid_msg()
    corrupt(msg)
    with pytest.raises(ConversionError, match=message):
        pointcloud2_to_array(msg)
    with pytest.raises(ConversionError):
        pointcloud2_to_xyzi(msg)


def test_xyzi_errors_name_the_problem():
    msg = with_fields(valid_msg(), [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)])
    with pytest.raises(ConversionError, match="no intensity field 'intensity'"):
        pointcloud2_to_xyzi(msg)
    assert pointcloud2_to_xyzi(msg, intensity_field=None).shape == (10, 4)
    msg = with_fields(valid_msg(), [("x", 0, 7, 2), ("y", 8, 7, 1), ("z", 12, 7, 1), ("intensity", 16, 7, 1)])
    with pytest.raises(ConversionError, match="field 'x' has count 2"):
        pointcloud2_to_xyzi(msg)


def test_conversion_error_is_the_documented_type():
    assert ConversionError is ErrorsConversionError and issubclass(ConversionError, ValueError)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 3), np.float32), "needs a numpy structured array"),
    (np.zeros((2, 2, 2), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), r"shape \(N,\) or \(height, width\)"),
    (np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "c8")]), "field 'z' has dtype complex64"),
    (np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f2")]), "field 'z' has dtype float16"),
    (np.zeros(3, dtype={"names": ["x", "y", "z"], "formats": ["f4", "f4", "f4"], "offsets": [0, 2, 8]}),
     r"fields 'x' \(bytes 0..3\) and 'y' \(bytes 2..5\) overlap"),
])
def test_array_to_pointcloud2_rejects_unrepresentable_arrays(bad, message):
    with pytest.raises(ConversionError, match=message):
        array_to_pointcloud2(bad)


def test_array_to_pointcloud2_zero_fills_padding_when_reencoding():
    cloud = lidar_cloud(8)
    raw = np.full(8 * 32, 0xAB, dtype=np.uint8)
    garbage = raw.view(cloud.dtype)
    for name in cloud.dtype.names:
        garbage[name] = cloud[name]
    msg = array_to_pointcloud2(garbage, is_bigendian=True)
    data = np.frombuffer(msg.data, np.uint8).reshape(8, 32)
    assert not data[:, 18:24].any()  # the 6 padding bytes between ring and time


# ------------------------------------------------------------------------------------------------
# Image


@st.composite
def images(draw):
    encoding = draw(st.sampled_from(sorted(LISTED_ENCODINGS)))
    code, channels, size = LISTED_ENCODINGS[encoding]
    height, width = draw(st.integers(0, 5)), draw(st.integers(0, 6))
    step = width * channels * size + draw(st.sampled_from([0, 0, 1, 3, 8]))
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = height, width, encoding, step
    msg.is_bigendian = int(draw(st.booleans()))
    msg.data = array.array("B", draw(st.binary(min_size=step * height, max_size=step * height)))
    return msg


def reference_image(msg: Image) -> np.ndarray:
    code, channels, size = LISTED_ENCODINGS[msg.encoding]
    endian = ">" if msg.is_bigendian else "<"
    data = bytes(msg.data)
    vals = [[struct.unpack_from(endian + code * channels, data, r * msg.step + c * channels * size)
             for c in range(msg.width)] for r in range(msg.height)]
    arr = np.array(vals, dtype=np.float64).reshape(msg.height, msg.width, channels)
    return arr[..., 0] if channels == 1 else arr


@SETTINGS
@given(msg=images())
def test_image_to_array_matches_struct_decoder_and_round_trips(msg):
    arr = image_to_array(msg)
    with np.errstate(invalid="ignore"):  # signalling-NaN payloads in random bytes
        np.testing.assert_array_equal(arr.astype(np.float64), reference_image(msg))
    back = array_to_image(arr, msg.encoding)
    assert back.step == msg.width * arr.itemsize * (1 if arr.ndim == 2 else arr.shape[2])
    assert bool(back.is_bigendian) == bool(msg.is_bigendian) or arr.itemsize == 1
    received = deserialize_message(serialize_message(back), Image)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(image_to_array(received).astype(np.float64), reference_image(msg))


def test_image_view_is_zero_copy_and_native_images_round_trip():
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    msg = deserialize_message(serialize_message(array_to_image(rgb, "rgb8", frame_id="cam")), Image)
    assert msg.header.frame_id == "cam" and msg.step == 15
    out = image_to_array(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(out, rgb)
    depth = np.linspace(0, 80, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(image_to_array(array_to_image(depth, "32FC1")), depth)
    np.testing.assert_array_equal(image_to_array(array_to_image(depth[..., None], "32FC1")), depth)


def image_msg(encoding="rgb8", height=2, width=3, step=9, nbytes=18) -> Image:
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = height, width, encoding, step
    msg.data = array.array("B", bytes(nbytes))
    return msg


@pytest.mark.parametrize("msg, message", [
    (image_msg(encoding="yuv422"), "unknown image encoding 'yuv422'"),
    (image_msg(encoding="8UC7"), r"unknown image encoding '8UC7' \(channel count must be 1..4\)"),
    (image_msg(nbytes=17), r"image data has 17 bytes; expected step\*height = 9\*2 = 18"),
    (image_msg(step=8, nbytes=16), r"step 8 is smaller than width\*channels\*bytes = 3\*3\*1 = 9"),
    (image_msg(encoding="mono16", step=5, nbytes=10), "step 5 is smaller"),
], ids=["unknown", "bad channels", "short", "step", "mono16 step"])
def test_malformed_image_raises_conversion_error(msg, message):
    with pytest.raises(ConversionError, match=message):
        image_to_array(msg)


@pytest.mark.parametrize("arr, encoding, message", [
    (np.zeros((2, 3, 3), np.float32), "rgb8", "encoding 'rgb8' needs uint8 pixels, got float32"),
    (np.zeros((2, 3), np.uint8), "rgb8", r"needs shape \(height, width, 3\), got \(2, 3\)"),
    (np.zeros((2, 3, 2), np.uint16), "mono16", r"needs shape \(height, width\), got \(2, 3, 2\)"),
    (np.zeros((2, 3), np.float64), "32FC1", "needs float32 pixels, got float64"),
    (np.zeros((2, 3), np.uint8), "jpeg", "unknown image encoding 'jpeg'"),
])
def test_array_to_image_rejects_mismatches(arr, encoding, message):
    with pytest.raises(ConversionError, match=message):
        array_to_image(arr, encoding)
