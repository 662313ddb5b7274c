"""TensorRT engine cache: keys, metadata, staleness, corruption (logic runs everywhere) and, where
TensorRT and a GPU exist, a real build + run through Engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from inference_models import IN_FEATURES, dense_relu_reference
from tps_inference import Engine, EngineParams
from tps_inference.device import cuda_status, tensorrt_status
from tps_inference.engine_cache import (
    EngineCacheKey,
    _parse_profile,
    check_cache,
    engine_paths,
    get_or_build,
    list_cache,
    main,
    onnx_profile_shapes,
    read_metadata,
)
from tps_inference.errors import EngineCacheError
from tps_inference.manifest import sha256_file

SHAPES = {"x": ((1, 3), (4, 3), (16, 3))}
ATOL_FP32 = 1e-4  # TensorRT may fuse/reorder the matmul


def make_key(**overrides) -> EngineCacheKey:
    fields = {"onnx_sha256": "b" * 64, "tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H100",
              "precision": "fp16", "input_shapes": SHAPES}
    fields.update(overrides)
    return EngineCacheKey(**fields)


class RecordingBuilder:
    """Stands in for the TensorRT builder (which needs a GPU): writes deterministic bytes and counts
    calls, so the cache decisions around it are observable."""

    def __init__(self, payload: bytes = b"serialized-engine"):
        self.payload, self.calls = payload, 0

    def __call__(self, onnx_path: Path, engine_path: Path) -> dict:
        self.calls += 1
        engine_path.write_bytes(self.payload + bytes([self.calls]))
        return {"builder": "recording", "onnx": onnx_path.name}


@pytest.fixture
def onnx_file(models_dir) -> Path:
    return models_dir / "toy" / "dense_relu.onnx"


def test_key_digest_is_stable_and_covers_every_field():
    key = make_key()
    assert key.digest() == make_key().digest() == EngineCacheKey.from_dict(json.loads(json.dumps(key.as_dict()))).digest()
    assert make_key(input_shapes={"x": [[1, 3], [4, 3], [16, 3]]}) == key  # lists and tuples canonicalise alike
    variants = [make_key(onnx_sha256="c" * 64), make_key(tensorrt_version="10.4.0"), make_key(gpu_name="Orin"),
                make_key(precision="int8"), make_key(input_shapes={"x": ((1, 3), (8, 3), (16, 3))})]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and key.digest() not in digests
    assert make_key(tensorrt_version="10.4.0", precision="int8").differences(key) == [
        "tensorrt_version: 10.3.0 -> 10.4.0", "precision: fp16 -> int8"]


def test_build_once_then_hit(onnx_file, tmp_path):
    builder, key = RecordingBuilder(), make_key(onnx_sha256=sha256_file(onnx_file))
    cache = tmp_path / "engines"
    assert check_cache(cache, onnx_file, key).state == "missing"
    engine = get_or_build(onnx_file, cache, key, builder)
    assert engine == engine_paths(cache, onnx_file, "fp16")[0] and engine.name == "dense_relu.fp16.engine"
    meta, cached_key = read_metadata(engine.with_name(engine.name + ".json"))
    assert cached_key == key and meta["engine_sha256"] == sha256_file(engine)
    assert meta["builder"] == {"builder": "recording", "onnx": "dense_relu.onnx"}
    assert check_cache(cache, onnx_file, key).state == "hit"
    assert get_or_build(onnx_file, cache, key, builder) == engine and builder.calls == 1
    assert not list(cache.glob("*.tmp"))


@pytest.mark.parametrize("change, field", [
    ({"tensorrt_version": "10.4.0"}, "tensorrt_version: 10.3.0 -> 10.4.0"),
    ({"gpu_name": "Orin"}, "gpu_name: NVIDIA H100 -> Orin"),
    ({"onnx_sha256": "d" * 64}, "onnx_sha256"),
    ({"input_shapes": {"x": ((1, 3), (8, 3), (32, 3))}}, "input_shapes"),
])
def test_stale_engine_is_rebuilt_or_refused_naming_the_difference(onnx_file, tmp_path, change, field):
    builder, cache = RecordingBuilder(), tmp_path / "engines"
    get_or_build(onnx_file, cache, make_key(), builder)
    new_key = make_key(**change)
    status = check_cache(cache, onnx_file, new_key)
    assert status.state == "stale" and field in status.reason
    with pytest.raises(EngineCacheError, match=rf"refusing stale TensorRT engine: .*{field}"):
        get_or_build(onnx_file, cache, new_key, builder, rebuild=False)
    assert builder.calls == 1
    engine = get_or_build(onnx_file, cache, new_key, builder)
    assert builder.calls == 2 and read_metadata(engine.with_name(engine.name + ".json"))[1] == new_key
    assert check_cache(cache, onnx_file, new_key).state == "hit"


def corrupt_engine_byte(engine: Path, meta: Path) -> None:
    data = bytearray(engine.read_bytes())
    data[0] ^= 0xFF
    engine.write_bytes(bytes(data))


def corrupt_metadata_json(engine: Path, meta: Path) -> None:
    meta.write_text("{not json")


def corrupt_metadata_key(engine: Path, meta: Path) -> None:
    doc = json.loads(meta.read_text())
    doc["key"]["precision"] = "fp32"  # hand edit: the digest no longer matches
    meta.write_text(json.dumps(doc))


CORRUPTIONS = [
    ("engine byte flipped", corrupt_engine_byte, r"sha256 .* does not match its metadata"),
    ("engine truncated", lambda e, m: e.write_bytes(e.read_bytes()[:-1]), r"has \d+ bytes; its metadata says"),
    ("engine deleted", lambda e, m: e.unlink(), "engine file .* is missing"),
    ("metadata deleted", lambda e, m: m.unlink(), "has no metadata file"),
    ("metadata not json", corrupt_metadata_json, "unreadable or incomplete"),
    ("metadata key edited", corrupt_metadata_key, "key_digest does not match its key"),
]


@pytest.mark.parametrize("case, corrupt, message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_engine_is_never_used_silently(onnx_file, tmp_path, case, corrupt, message):
    builder, cache, key = RecordingBuilder(), tmp_path / "engines", make_key()
    engine = get_or_build(onnx_file, cache, key, builder)
    corrupt(engine, engine.with_name(engine.name + ".json"))
    status = check_cache(cache, onnx_file, key)
    assert status.state == "corrupt"
    assert __import__("re").search(message, status.reason), status.reason
    with pytest.raises(EngineCacheError, match="refusing corrupt TensorRT engine"):
        get_or_build(onnx_file, cache, key, builder, rebuild=False)
    rebuilt = get_or_build(onnx_file, cache, key, builder)
    assert builder.calls == 2 and check_cache(cache, onnx_file, key).state == "hit"
    assert rebuilt.read_bytes() == b"serialized-engine\x02"


def test_failed_build_leaves_no_engine(onnx_file, tmp_path):
    with pytest.raises(EngineCacheError, match="produced no engine"):
        get_or_build(onnx_file, tmp_path / "engines", make_key(), lambda onnx, engine: None)
    assert check_cache(tmp_path / "engines", onnx_file, make_key()).state == "missing"


def test_profile_shapes_from_onnx(models_dir):
    dense = models_dir / "toy" / "dense_relu.onnx"
    with pytest.raises(EngineCacheError, match=r"ONNX input 'x' .* has dynamic shape \[-1, 3\]"):
        onnx_profile_shapes(dense, {})
    assert onnx_profile_shapes(dense, SHAPES) == SHAPES
    two = onnx_profile_shapes(models_dir / "toy" / "two_inputs.onnx", {"a": ((1, 4),) * 3, "b": ((1, 4),) * 3})
    assert two["k"] == ((1,), (1,), (1,))


def test_profile_argument_parsing():
    assert _parse_profile("x=1x3:4x3:16x3") == ("x", ((1, 3), (4, 3), (16, 3)))
    assert _parse_profile("bev=1x8x64x64") == ("bev", ((1, 8, 64, 64),) * 3)
    for bad in ("x", "x=1x3:4x3", "x=1xa"):
        with pytest.raises(argparse.ArgumentTypeError):
            _parse_profile(bad)


def test_command_line_list_reports_corruption(onnx_file, tmp_path, capsys):
    cache = tmp_path / "engines"
    engine = get_or_build(onnx_file, cache, make_key(), RecordingBuilder())
    assert main(["list", "--cache", str(cache)]) == 0
    (row,) = list_cache(cache)
    assert row["state"] == "ok" and row["precision"] == "fp16" and row["engine"] == "dense_relu.fp16.engine"
    corrupt_engine_byte(engine, engine.with_name(engine.name + ".json"))
    assert main(["list", "--cache", str(cache)]) == 1
    assert "corrupt: sha256 differs from metadata" in capsys.readouterr().out


@pytest.mark.skipif(tensorrt_status()[0], reason="TensorRT is installed here")
def test_command_line_build_without_tensorrt_says_so(models_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TPS_MANIFEST", str(models_dir / "manifest.yaml"))
    code = main(["build", str(models_dir / "toy" / "dense_relu.onnx"), "--shape", "x=1x3:4x3:16x3",
                 "--cache", str(tmp_path / "engines")])
    assert code == 2 and "TensorRT is not importable" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "unlisted.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# real TensorRT (vehicles, the x86 Docker image)

TRT_OK, TRT_WHY = tensorrt_status()
CUDA_OK, CUDA_WHY = cuda_status()


@pytest.mark.gpu
@pytest.mark.skipif(not (TRT_OK and CUDA_OK), reason=TRT_WHY if not TRT_OK else CUDA_WHY)
def test_tensorrt_builds_caches_and_runs(models_dir, tmp_path):
    params = EngineParams(backend="tensorrt", precision="fp32", engine_cache_dir=str(tmp_path / "engines"),
                          trt_input_shapes=SHAPES)
    engine = Engine(models_dir / "toy" / "dense_relu.onnx", params, manifest=models_dir / "manifest.yaml")
    assert engine.backend_name == "tensorrt"
    x = np.random.default_rng(0).normal(size=(4, IN_FEATURES)).astype(np.float32)
    result = engine.run({"x": x})
    np.testing.assert_allclose(result["y"], dense_relu_reference(x)["y"], atol=ATOL_FP32)
    assert result.device_time_ms is not None and result.device_time_ms > 0
    cached = sorted(p.name for p in (tmp_path / "engines").iterdir())
    assert cached == ["dense_relu.fp32.engine", "dense_relu.fp32.engine.json"]
    again = Engine(models_dir / "toy" / "dense_relu.onnx", params, manifest=models_dir / "manifest.yaml")
    np.testing.assert_allclose(again({"x": x})["y"], result["y"], atol=0)
