"""Unit tests of the Agent-Centric Tokenizer core: sampling geometry, VQ (EMA, dead-code restart,
commitment), head targets, the detector + tokenizer core, and that the onboard modules stay torch-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from tokenizer_helpers import DET_META, TINY_TOK, scene_cloud, tiny_detector, tiny_tokenizer
from tps_perception.faults import FaultInjector, FaultParams
from tps_perception.pillars import PreprocessError
from tps_perception.tokenizer import GEOMETRY_FIELDS, PerceptionTokenizer, TokenizerParams
from tps_perception.tokenizer_backends import torch_feature_backend, torch_token_backend
from tps_perception.tokenizer_layout import (
    HEAD_TARGETS,
    TokenizerConfig,
    agent_sample_points,
    bilinear_sample,
    decode_targets,
    head_targets,
    scene_pool,
)
from tps_perception.tokenizer_model import AgentTokenizer, VectorQuantizerEMA

SAMPLE_TOL = 1e-4
CFG = TokenizerConfig()


# ---------------------------------------------------------------- geometry

def test_agent_grid_is_box_aligned_and_spans_the_grown_box():
    box = np.array([[10.0, -4.0, 0.8, 4.5, 1.9, 1.5, np.pi / 2]], np.float32)
    pts = agent_sample_points(box, CFG)[0].reshape(CFG.grid, CFG.grid, 2)
    centre = pts[CFG.grid // 2, CFG.grid // 2]
    np.testing.assert_allclose(centre, [10.0, -4.0], atol=1e-5)
    # axis 0 runs along the length: with yaw pi/2 that is +y, over length + 2 margins
    along = pts[-1, CFG.grid // 2] - pts[0, CFG.grid // 2]
    np.testing.assert_allclose(along, [0.0, 4.5 + 2 * CFG.margin_m], atol=1e-4)
    across = pts[CFG.grid // 2, -1] - pts[CFG.grid // 2, 0]
    np.testing.assert_allclose(across, [-(1.9 + 2 * CFG.margin_m), 0.0], atol=1e-4)
    small = agent_sample_points(np.array([[0, 0, 0.8, 0.6, 0.6, 1.7, 0.0]], np.float32), CFG)[0]
    assert np.ptp(small[:, 0]) == pytest.approx(CFG.min_extent_m)


def test_numpy_sampler_matches_the_exported_torch_sampler():
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(CFG.feature_channels, 64, 64)).astype(np.float32)
    boxes = np.array([[3.0, -2.0, 0.8, 4.5, 1.9, 1.5, 0.3], [50.5, 10.0, 0.8, 12.0, 2.5, 3.0, 2.0],
                      [-20.0, 5.0, 0.8, 0.6, 0.6, 1.7, -1.0]], np.float32)
    ref = bilinear_sample(feat, agent_sample_points(boxes, CFG), CFG.range_m)      # (N, C, P)
    tok = AgentTokenizer(CFG)                                                      # identity normalisation
    with torch.no_grad():
        got = tok.sample(torch.from_numpy(feat[None]), torch.from_numpy(boxes[None]))[0].numpy()
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=SAMPLE_TOL)
    # the box hanging over the map edge reads zeros outside
    assert (ref[1] == 0).any() and not (ref[0] == 0).any()
    with torch.no_grad():
        s = tok.scene_inputs(torch.from_numpy(feat[None]))[0].numpy()
    np.testing.assert_allclose(s, scene_pool(feat, CFG.scene_grid), atol=SAMPLE_TOL)


def test_head_targets_round_trip_and_clip_logits():
    hm = np.full((5, 64, 64), -20.0, np.float32)
    boxes = np.array([[5.0, 3.0, 0.9, 4.6, 1.9, 1.5, 2.5]], np.float32)
    i, j = int((5.0 + 51.2) // 1.6), int((3.0 + 51.2) // 1.6)
    hm[3, i, j] = 4.0
    t = head_targets(hm, boxes, np.array([[3.0, -1.0]]), 1.6, 51.2)
    assert t.shape == (1, len(HEAD_TARGETS)) and t[0, 0] == -8.0 and t[0, 3] == 4.0
    d = decode_targets(t)
    assert d.class_id[0] == 4
    np.testing.assert_allclose(d.size[0], [4.6, 1.9, 1.5], rtol=1e-5)
    assert d.yaw[0] == pytest.approx(2.5, abs=1e-5) and d.z[0] == pytest.approx(0.9)
    np.testing.assert_allclose(d.velocity[0], [3.0, -1.0], atol=1e-5)


# ---------------------------------------------------------------- vector quantiser

def _two_clusters(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 4, generator=g) * 0.05 + torch.tensor([2.0, 0, 0, 0])
    b = torch.randn(n, 4, generator=g) * 0.05 + torch.tensor([-2.0, 0, 0, 0])
    return torch.cat([a, b]), torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])


def test_ema_moves_codes_to_their_weighted_cluster_means_and_ignores_zero_weight():
    z, which = _two_clusters()
    vq = VectorQuantizerEMA(2, 4, decay=0.5)
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
        vq.embed_sum.copy_(vq.embedding)
        vq.cluster_size.fill_(1.0)
    weight = (which == 0).float()   # the second cluster weighs nothing: its code must not move
    for _ in range(30):
        idx, _ = vq.nearest(z)
        vq.ema_update(z, idx, weight)
    assert vq.embedding[0, 0].item() == pytest.approx(2.0, abs=0.05)
    assert vq.embedding[1, 0].item() == pytest.approx(-1.0, abs=0.05)


def test_dead_codes_restart_onto_weighted_samples():
    z, which = _two_clusters()
    vq = VectorQuantizerEMA(4, 4)
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[2.0, 0, 0, 0], [-2.0, 0, 0, 0], [50.0, 0, 0, 0], [-50.0, 0, 0, 0]]))
        vq.cluster_size.copy_(torch.tensor([10.0, 10.0, 0.0, 0.0]))
    weight = (which == 0).float()
    n = vq.restart_dead(z, weight, dead_fraction=0.1, generator=torch.Generator().manual_seed(0))
    assert n == 2
    # the restarted codes sit on samples of the weighted cluster
    assert torch.allclose(vq.embedding[2:, 0], torch.full((2,), 2.0), atol=0.3)
    idx, qerr = vq.nearest(z[which == 0])
    assert qerr.max() < 0.5


def test_straight_through_and_commitment():
    vq = VectorQuantizerEMA(3, 2)
    z = torch.tensor([[0.1, 0.0], [5.0, 5.0]], requires_grad=True)
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]]))
    zq, idx, qerr = vq(z)
    assert idx.tolist() == [0, 1] and qerr[0].item() == pytest.approx(0.1, abs=1e-5)
    assert torch.allclose(zq, vq.embedding[idx])
    zq.sum().backward()              # straight through: the encoder output gets the gradient
    assert torch.allclose(z.grad, torch.ones_like(z))
    c = vq.commitment(z, idx, torch.tensor([1.0, 0.0]))
    assert c.item() == pytest.approx(0.01 / 2, abs=1e-6)   # only the weighted vector counts


# ---------------------------------------------------------------- the core

@pytest.fixture(scope="module")
def core():
    params = TokenizerParams.from_meta(DET_META, {"config": TINY_TOK.to_dict()}, score_threshold=0.3)
    return PerceptionTokenizer(params, torch_feature_backend(tiny_detector(), 1),
                               torch_token_backend(tiny_tokenizer(), 1), keep_features=True)


def test_core_gives_one_token_per_published_agent_with_its_id_and_geometry(core):
    core.reset()
    for k in range(3):
        res = core.run(scene_cloud(0), 0.1 * k, np.array([0.0, 0.0, 0.0]))
    n = len(res.detections)
    assert n > 0, "the tiny detector should find peaks"
    tok = res.tokens
    assert len(tok) == n and tok.geometry.shape == (n, len(GEOMETRY_FIELDS))
    np.testing.assert_array_equal(tok.agent_ids, res.track_ids)
    np.testing.assert_allclose(tok.geometry[:, :2], res.detections.boxes[:, :2])
    np.testing.assert_allclose(tok.geometry[:, 2], res.detections.boxes[:, 6])
    np.testing.assert_allclose(tok.geometry[:, 5:7], res.velocities)
    assert (tok.codes < TINY_TOK.codebook_size).all() and (tok.qerr >= 0).all()
    assert len(tok.scene_codes) == TINY_TOK.scene_tokens and (tok.scene_codes < TINY_TOK.scene_codebook_size).all()
    assert res.features.shape == (TINY_TOK.feature_channels, 64, 64)
    assert res.total_ms >= res.detection.total_ms


def test_core_tokenizes_injected_phantoms_too(core):
    core.reset()
    faults = FaultInjector(FaultParams(phantom_rate=4.0, seed=3))
    res = core.run(scene_cloud(1), 0.0, None, faults)
    assert res.fault is not None and res.fault.phantoms > 0
    assert len(res.tokens) == len(res.detections) == len(res.track_ids)


def test_core_more_agents_than_graph_rows_and_no_agents(core):
    feats = core.last_features
    boxes = np.tile(np.array([[5.0, 2.0, 0.8, 4.5, 1.9, 1.5, 0.2]], np.float32), (TINY_TOK.max_agents * 2 + 3, 1))
    t = core.tokenize(feats, boxes, np.zeros((len(boxes), 2), np.float32))
    assert len(t) == len(boxes) and len(set(t.codes.tolist())) == 1   # identical boxes, identical code
    empty = core.tokenize(feats, np.zeros((0, 7), np.float32), np.zeros((0, 2), np.float32))
    assert len(empty) == 0 and len(empty.scene_codes) == TINY_TOK.scene_tokens


def test_core_rejects_a_bad_cloud(core):
    with pytest.raises(PreprocessError, match="NaN"):
        core.run(np.full((10, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="boxes must be"):
        core.tokenize(core.last_features, np.zeros((3, 5), np.float32), np.zeros((3, 2), np.float32))


def test_onboard_tokenizer_modules_do_not_import_torch():
    code = ("import sys; import tps_perception.tokenizer, tps_perception.tokenizer_layout, "
            "tps_perception.tokenizer_backends; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
