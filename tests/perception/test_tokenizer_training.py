"""Tokenizer training: the detector stays frozen (no gradient reaches it, weights byte-identical
after training), the losses fall on a tiny problem, and a smoke run writes both variants."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from tokenizer_helpers import DET_META, TINY_TOK, scene_bevs, tiny_detector
from tps_perception.backends import load_torch_model
from tps_perception.tokenizer_backends import load_torch_tokenizer
from tps_perception.tokenizer_model import AgentTokenizer, DetectorWithFeatures, freeze

from training.tokenizer import main, state_sha256


def _tokenizer_loss(det: torch.nn.Module, tok: AgentTokenizer) -> torch.Tensor:
    """A tokenizer loss computed on features the detector produces in the same graph."""
    bev = torch.from_numpy(np.stack(scene_bevs(2)))
    _, _, feat = det(bev)
    boxes = torch.tensor([[[6.0, -3.0, 0.8, 4.5, 1.9, 1.5, 0.1], [13.0, -0.5, 0.8, 4.5, 1.9, 1.5, 0.4]]]).repeat(2, 1, 1)
    patches = tok.sample(feat, boxes).reshape(4, -1)
    out = tok(patches, torch.zeros(4, 2))
    return ((out["patch_hat"] - patches) ** 2).mean() + out["head_hat"].pow(2).mean()


def test_no_gradient_reaches_the_frozen_detector():
    tok = AgentTokenizer(TINY_TOK)
    frozen = freeze(DetectorWithFeatures(tiny_detector()))
    _tokenizer_loss(frozen, tok).backward()
    assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tok.encoder.parameters())
    # control: the same loss through a detector that is not frozen does reach it
    live = DetectorWithFeatures(tiny_detector())
    live.train()
    _tokenizer_loss(live, AgentTokenizer(TINY_TOK)).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in live.parameters())


def test_frozen_detector_batchnorm_statistics_do_not_move():
    det = freeze(DetectorWithFeatures(tiny_detector()))
    before = state_sha256(det)
    with torch.no_grad():
        det(torch.from_numpy(np.stack(scene_bevs(2))))
    assert state_sha256(det) == before
    det.net.train()        # a detector left in train mode would update its BatchNorm statistics
    with torch.no_grad():
        det(torch.from_numpy(np.stack(scene_bevs(2))))
    assert state_sha256(det) != before


@pytest.mark.slow
def test_training_smoke_run_keeps_the_detector_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("TPS_ROOT", str(tmp_path))
    det_dir = tmp_path / "detector"
    det_dir.mkdir()
    net = tiny_detector()
    torch.save({"state_dict": net.state_dict(), "net": DET_META["net"], "grid": DET_META["grid"],
                "decode": DET_META["decode"]}, det_dir / "detector.pt")
    (det_dir / "detector.json").write_text(json.dumps(DET_META))
    before = hashlib.sha256((det_dir / "detector.pt").read_bytes()).hexdigest()
    state_before = state_sha256(load_torch_model(det_dir / "detector.pt")[0])
    rc = main(["--synthetic-episodes", "3", "--epochs", "2", "--batch-frames", "4", "--detector-dir", str(det_dir),
               "--codebook-size", "32", "--code-dim", "16", "--hidden", "32", "--threads", "1",
               "--run-name", "smoke"])
    assert rc == 0
    assert hashlib.sha256((det_dir / "detector.pt").read_bytes()).hexdigest() == before
    assert state_sha256(load_torch_model(det_dir / "detector.pt")[0]) == state_before
    final = tmp_path / "runs" / "tokenizer" / "smoke" / "final"
    meta = json.loads((final / "tokenizer.json").read_text())
    assert meta["detector_state_sha256"] == state_before and set(meta["variants"]) == {"targeted", "untargeted"}
    for name, variant in (("tokenizer.pt", "targeted"), ("tokenizer_untargeted.pt", "untargeted")):
        tok, ckpt = load_torch_tokenizer(final / name)
        assert ckpt["variant"] == variant and ckpt["code_table"].shape == (32, 13)
        assert ckpt["decoder_table"].shape == (32, 13) and tok.cfg.codebook_size == 32
        assert np.isfinite(ckpt["code_table"].numpy()).all()
    assert (tmp_path / "runs" / "tokenizer" / "smoke" / "log_targeted.csv").exists()
