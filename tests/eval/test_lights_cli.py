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


def test_occluders_hide_what_they_plan_and_the_reader_never_reads_a_wrong_colour(tmp_path):
    """`--occluders`: every candidate head 10-60 m ahead gets a box in its line of sight; the
    ray test scores the heads as hidden (occluded or partly), and the verb fails on any wrong
    colour (exit 0 here needs occluded samples and no wrong colour)."""
    out = tmp_path / "occluded.json"
    proc = subprocess.run([str(VENV_BIN / "tps-eval"), "lights", "--seeds", SEED, "--scenarios", "lights",
                           "--duration", "16", "--every", "3", "--occluders", "--json", str(out),
                           "--quiet"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert out.is_file(), proc.stderr
    res = json.loads(out.read_text())
    assert res["occluders"] is True
    s = res["summary"]
    assert s["occluded_or_partly_samples"] > 0
    # Every in-band in-view head has its own occluder: none is left wholly visible.
    assert s["samples_in_band_visible"] == 0
    assert s["wrong_colour_total"] == 0 and s["occluded_or_partly_wrong"] == 0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Occluders:" in out.with_suffix(".md").read_text()


def test_add_occluders_plans_match_the_ray_test():
    """The box's top sits in the gap above the highest hidden lamp: hiding 3 lamps gives
    ``occluded``, 1 or 2 ``partly_occluded`` (the lowest ones), for heads 10-60 m away; heads
    outside that band get no box."""
    import numpy as np
    from tps_common.traffic_lights import HOUSING_DEPTH_M, HOUSING_HEIGHT_M, HOUSING_WIDTH_M, LightHead
    from tps_eval import lights as L
    from tps_sim.sensors.scene3d import MAT_SIGNAL, SIGNAL_ID_BASE, BoxSet, LightScene, Scene3D
    from tps_sim.sensors.synthetic import straight_road

    head = LightHead(1, (80.0, 0.0, 5.5), np.pi, np.array([49.0, 0.0]), 0.0, 3.5)
    housing = BoxSet(np.array([SIGNAL_ID_BASE]), np.array([head.position]),
                     np.array([[HOUSING_DEPTH_M, HOUSING_WIDTH_M, HOUSING_HEIGHT_M]]), np.array([np.pi]),
                     np.array([MAT_SIGNAL], np.int16))
    lights = LightScene((head,), np.array([0], np.uint8), housing, np.array([0]))
    road = straight_road(lanes=2, length_m=200.0)
    seen: dict = {}
    for step in range(30):
        for x in (22.0, 45.0, 66.0):                        # 58, 35 and 14 m from the housing
            origin = np.array([x + 1.5, 0.0, 1.5])
            scene = Scene3D(BoxSet.empty(), BoxSet.empty(), road, (x, 0.0, 0.0), lights=lights)
            scene2, planned = L.add_occluders(scene, [head], origin, seed=5, step=step)
            assert len(scene2.statics) == 1
            seen.setdefault(planned[1], set()).add(L.lamp_visibility(scene2, 0, origin))
    assert seen == {1: {L.VIS_PARTIAL}, 2: {L.VIS_PARTIAL}, 3: {L.VIS_OCCLUDED}}
    far = Scene3D(BoxSet.empty(), BoxSet.empty(), road, (0.0, 0.0, 0.0), lights=lights)
    assert L.add_occluders(far, [head], np.array([1.5, 0.0, 1.5]), seed=5, step=0)[1] == {}
