"""Tokenizer export: the features output leaves the detector graph's heads bit-identical, the
tokenizer ONNX matches torch, INT8 (Gemm-only QDQ) stays close, the Engine path (manifest,
sha256) chains both graphs, and TensorRT builds behind a GPU skip."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
import torch
from tokenizer_helpers import (
    DET_META,
    GRID,
    TINY_NET,
    TINY_TOK,
    scene_bevs,
    scene_cloud,
    tiny_detector,
    tiny_tokenizer,
)
from tps_perception.backends import ort_backend, torch_backend
from tps_perception.pillars import BEV_CHANNELS
from tps_perception.tokenizer import PerceptionTokenizer, TokenizerParams
from tps_perception.tokenizer_backends import (
    ort_feature_backend,
    ort_token_backend,
    torch_feature_backend,
    torch_token_backend,
)

from export.detector import build_engine
from export.detector import export_onnx as export_detector
from export.detector import quantize_int8 as quantize_detector
from export.tokenizer import add_feature_output, export_onnx, feature_tensor, quantize_int8, token_parity

FEAT_SHAPE = (1, TINY_TOK.feature_channels, GRID.size // 2, GRID.size // 2)
FEATURE_TOL = 1e-4            # ONNX FP32 features vs torch
QERR_REL_TOL = 1e-4           # ONNX FP32 tokenizer vs torch, relative quantisation error
INT8_MIN_AGREEMENT = 0.8      # INT8 tokenizer: share of agents keeping their code (random tiny weights)
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _boxes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = np.zeros((n, 7), np.float32)
    b[:, :2] = rng.uniform(-40, 40, (n, 2))
    b[:, 2], b[:, 3:6] = 0.8, rng.choice([[4.5, 1.9, 1.5], [0.7, 0.7, 1.7], [11.0, 2.5, 3.2]], n)
    b[:, 6] = rng.uniform(-np.pi, np.pi, n)
    return b, rng.normal(0, 5, (n, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("graphs")
    det = tiny_detector()
    det_onnx = export_detector(det, d / "detector.onnx", (1, len(BEV_CHANNELS), GRID.size, GRID.size))
    det_int8 = quantize_detector(det_onnx, d / "detector_int8.onnx", scene_bevs(3))
    tok = tiny_tokenizer()
    tok_onnx = export_onnx(tok, d / "tokenizer.onnx", FEAT_SHAPE)
    return {"dir": d, "det": det, "det_onnx": det_onnx, "det_int8": det_int8, "tok": tok, "tok_onnx": tok_onnx}


@pytest.mark.parametrize("name", ["det_onnx", "det_int8"])
def test_features_output_keeps_the_heads_bit_identical(graphs, tmp_path, name):
    src = graphs[name]
    dst = tmp_path / "with_features.onnx"
    assert add_feature_output(src, dst, FEAT_SHAPE) is True
    assert add_feature_output(dst, dst, FEAT_SHAPE) is False        # idempotent
    g_src, g_dst = onnx.load(str(src)).graph, onnx.load(str(dst)).graph
    assert [o.name for o in g_dst.output] == ["heatmap", "regression", "features"]
    assert len(g_dst.node) == len(g_src.node) + 1 and len(g_dst.initializer) == len(g_src.initializer)
    if name == "det_int8":
        assert "DequantizeLinear" in feature_tensor(g_src)           # what the INT8 head convs read
    bevs = scene_bevs(2)
    plain = ort_backend(src, threads=1)
    feat_be = ort_feature_backend(dst, threads=1)
    ref = torch_feature_backend(graphs["det"], 1)
    for b in bevs:
        hm0, reg0 = plain(b)
        hm1, reg1, feat = feat_be(b)
        np.testing.assert_array_equal(hm0, hm1)
        np.testing.assert_array_equal(reg0, reg1)
        assert feat.shape == FEAT_SHAPE[1:]
        if name == "det_onnx":
            np.testing.assert_allclose(feat, ref(b)[2], atol=FEATURE_TOL)
        else:
            assert np.abs(feat - ref(b)[2]).mean() < 0.1 * np.abs(ref(b)[2]).mean() + 1e-3


def test_tokenizer_onnx_matches_torch_and_int8_stays_close(graphs, tmp_path):
    tok = graphs["tok"]
    feats = [torch_feature_backend(graphs["det"], 1)(b)[2] for b in scene_bevs(3)]
    # more agents than one call takes (chunked), a few, and none (scene codes only)
    inputs = [(f, *_boxes(n, k)) for k, (f, n) in enumerate(zip(feats, (TINY_TOK.max_agents + 5, 3, 0), strict=True))]
    ref_be = torch_token_backend(tok, 1)
    ref = [ref_be(*x) for x in inputs]
    fp32 = [ort_token_backend(graphs["tok_onnx"], 1, max_agents=TINY_TOK.max_agents)(*x) for x in inputs]
    for r, o in zip(ref, fp32, strict=True):
        np.testing.assert_array_equal(r[0], o[0])
        np.testing.assert_allclose(o[1], r[1], rtol=QERR_REL_TOL, atol=1e-5)
        np.testing.assert_array_equal(r[2], o[2])
    int8 = quantize_int8(graphs["tok_onnx"], tmp_path / "tok_int8.onnx")
    ops = [n.op_type for n in onnx.load(str(int8)).graph.node]
    assert ops.count("MatMulInteger") == 5 and ops.count("MatMul") == 2      # 5 MLP layers; 2 VQ distances FP32
    assert "ArgMin" in ops and "GridSample" in ops and "Gemm" not in ops
    q = [ort_token_backend(int8, 1)(*x) for x in inputs]
    par = token_parity([r[:2] for r in ref], [o[:2] for o in q])
    assert par["code_agreement"] >= INT8_MIN_AGREEMENT and par["qerr_max_abs"] > 0.0


def test_engine_backends_chain_both_graphs_from_the_manifest(graphs, tmp_path, monkeypatch):
    import json

    from tps_inference.manifest import add_entry
    from tps_perception.tokenizer_backends import engine_backends

    models = tmp_path / "models"
    (models / "detector").mkdir(parents=True)
    (models / "tokenizer").mkdir()
    add_feature_output(graphs["det_onnx"], models / "detector" / "detector.onnx", FEAT_SHAPE)
    (models / "detector" / "detector.json").write_text(json.dumps(DET_META))
    export_onnx(graphs["tok"], models / "tokenizer" / "tokenizer.onnx", FEAT_SHAPE)
    (models / "tokenizer" / "tokenizer.json").write_text(json.dumps({"config": TINY_TOK.to_dict()}))
    man = models / "manifest.yaml"
    man.write_text("version: 1\nmodels:\n")
    add_entry(man, "detector_fp32", models / "detector" / "detector.onnx", "test", "test")
    add_entry(man, "tokenizer_fp32", models / "tokenizer" / "tokenizer.onnx", "test", "test")
    monkeypatch.setenv("TPS_MANIFEST", str(man))
    fb, tb, det_meta, tok_meta, what = engine_backends("fp32", "onnxruntime", 1)
    assert "onnxruntime" in what.lower()
    params = TokenizerParams.from_meta(det_meta, tok_meta, score_threshold=0.3)
    eng = PerceptionTokenizer(params, fb, tb)
    ref = PerceptionTokenizer(params, torch_feature_backend(graphs["det"], 1), torch_token_backend(graphs["tok"], 1))
    a = eng.run(scene_cloud(0), 0.0)
    b = ref.run(scene_cloud(0), 0.0)
    assert len(a.tokens) == len(b.tokens) > 0
    np.testing.assert_array_equal(a.tokens.codes, b.tokens.codes)
    # a modified file is refused
    (models / "tokenizer" / "tokenizer.onnx").write_bytes(b"x" + (models / "tokenizer" / "tokenizer.onnx").read_bytes())
    from tps_inference.errors import ArtifactChecksumError

    with pytest.raises(ArtifactChecksumError):
        engine_backends("fp32", "onnxruntime", 1)


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TENSORRT and torch.cuda.is_available()), reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_fp16_engines_build(graphs, tmp_path):
    from tps_perception.tokenizer_backends import agent_profile

    eng = build_engine(graphs["tok_onnx"], "fp16", tmp_path / "tokenizer_fp16.engine",
                       profiles=agent_profile(TINY_TOK.max_agents))
    assert eng.exists() and eng.with_suffix(".engine.json").exists()
    det = tmp_path / "det_features.onnx"
    add_feature_output(graphs["det_onnx"], det, FEAT_SHAPE)
    assert build_engine(det, "fp16", tmp_path / "det_fp16.engine").exists()


def test_torch_backends_agree_with_the_detector_backend(graphs):
    """The feature backend's head outputs are the detector backend's (same module, same numbers)."""
    b = scene_bevs(1)[0]
    hm, reg = torch_backend(graphs["det"], threads=1)(b)
    hm2, reg2, feat = torch_feature_backend(graphs["det"], 1)(b)
    np.testing.assert_array_equal(hm, hm2)
    np.testing.assert_array_equal(reg, reg2)
    assert feat.shape[0] == TINY_NET.head
