"""`tps-eval lights`: the reader's accuracy report on a short expert episode (a TRAIN seed):
JSON keys, bands, the seed label, and the exit status following the acceptance figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
SEED = "7"                   # TRAIN split: never reported as held out
TIMEOUT_S = 300


def test_lights_verb_writes_the_report(tmp_path):
    out = tmp_path / "lights.json"
    proc = subprocess.run([str(VENV_BIN / "tps-eval"), "lights", "--seeds", SEED, "--scenarios", "lights",
                           "--duration", "16", "--every", "3", "--json", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert out.is_file(), proc.stderr
    res = json.loads(out.read_text())
    assert res["split"] == "train" and res["held_out"] is False
    assert res["camera"]["width"] == 640 and res["samples"] > 0 and res["frames"] > 0
    bands = {b["band_m"]: b for b in res["bands"]}
    assert "10-20" in bands and set(bands["30-40"]) >= {"visible", "partly_occluded", "occluded"}
    s = res["summary"]
    assert s["wrong_colour_total"] == 0
    assert s["samples_in_band_visible"] > 0
    expected = 0 if s["accuracy_met"] and s["wrong_colour_total"] == 0 else 1
    assert proc.returncode == expected, proc.stdout + proc.stderr
    assert "Traffic-light reader" in out.with_suffix(".md").read_text()
