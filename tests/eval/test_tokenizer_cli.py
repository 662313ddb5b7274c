"""``tps-eval tokenizer`` end to end with the shipped detector + tokenizers on a fresh VAL episode,
and the statistics it reports (AUROC, perplexity, code share)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tps_eval.cli import main
from tps_eval.tokenizer.evaluate import auroc, perplexity

REPO = Path(__file__).resolve().parents[2]
SEEDS = "1002:1003"   # VAL seed, medium clutter
REQUIRED_KEYS = {"agent_recon_error_targeted", "agent_recon_error_untargeted", "agent_code_share_targeted",
                 "agent_code_share_untargeted", "class_acc_ratio", "perplexity", "novelty_auroc"}
LABEL_KEYS = {"seeds", "split", "held_out"}


def test_auroc_ranks_and_ties():
    assert auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert auroc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert auroc(np.ones(5), np.ones(3)) == 0.5
    assert auroc(np.array([0.1, 0.5]), np.array([0.5, 0.9])) == pytest.approx(0.875)
    assert auroc(np.zeros(0), np.ones(3)) is None


def test_perplexity_of_uniform_and_single_code_use():
    assert perplexity(np.arange(8), 16) == pytest.approx(8.0)
    assert perplexity(np.zeros(10, np.int64), 16) == pytest.approx(1.0)


def test_tokenizer_verb_writes_both_variants_and_the_acceptance_keys(tmp_path):
    out = tmp_path / "tok.json"
    rc = main(["tokenizer", "--seeds", SEEDS, "--scenarios", "cut_in", "--duration", "4", "--frame-stride", "5",
               "--threads", "1", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert REQUIRED_KEYS | LABEL_KEYS <= set(res)
    assert res["frames"] == 9 and res["agents"] > 0
    assert set(res["variants"]) == {"targeted", "untargeted"}
    for v in res["variants"].values():
        assert 1.0 <= v["agent_perplexity"] <= v["codebook_size"]
        assert 0.0 <= v["agent_code_share"] <= 1.0
        assert set(v["qerr"]["agents_per_clutter"]) == {"none", "low", "medium", "high"}
        assert v["qerr"]["phantoms"]["n"] > 0 and v["qerr"]["pose_noise"]["n"] == res["agents"]
    assert res["variants"]["targeted"]["codebook_size"] == res["variants"]["untargeted"]["codebook_size"]
    assert 0.0 <= res["novelty_auroc"] <= 1.0
    assert set(res["targets"]) >= {"agent_code_share_targeted", "class_acc_ratio", "novelty_auroc"}
    assert res["split"] == "val" and res["held_out"] is False      # VAL seeds: never held out
    md = out.with_suffix(".md").read_text()
    assert "untargeted" in md and "NOT held out" in md


def test_missing_model_and_bad_seeds_are_usage_errors(tmp_path, capsys):
    assert main(["tokenizer", "--seeds", "9000", "--model-dir", str(tmp_path)]) == 2
    assert "tokenizer.json" in capsys.readouterr().err
    assert main(["tokenizer", "--seeds", "5:3"]) == 2
