"""Targeted training data around a search's failures (issue 16, ``tps-sim dataset --from-search``):
the episode plan (perturbed parameters inside the space, new TRAIN seeds, provenance), the sensor
faults and adversary carried into the shards, and the CLI end to end."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from sim_bridge_helpers import VENV_BIN
from tps_sim import splits
from tps_sim.dataset import episode_arrays, load_episode, targeted_tasks

RANGES = {"density": [0.3, 2.0], "adversary.cut_gap_m": [3.0, 13.0],
          "adversary.speed_delta_mps": [2.0, 10.0]}
CUT_IN = {"scenario": "cut_in", "duration_s": 2.0, "density": 0.5, "clutter": "low",
          "faults": {"point_dropout": {"fraction": 0.5, "onset_s": 0.5}}, "obstacles": [],
          "route_goal_m": 100.0, "node_parameters": {},
          "adversary": {"cut_gap_m": 4.0, "speed_delta_mps": 9.0}}
BLACKOUT = dict(CUT_IN, faults={}, node_parameters={"perception": {"fault_blackout": True,
                                                                      "fault_onset_s": 1.0}})


def _summary(*options, failure=True):
    return {"space": "t", "seed": 4, "ranges": RANGES, "cases": [
        {"arm": "search", "trial": i, "seed": 5000 + i, "failure": failure, "options": o}
        for i, o in enumerate(options)]}


def test_the_plan_perturbs_inside_the_space_on_new_train_seeds():
    tasks = targeted_tasks(_summary(CUT_IN, BLACKOUT), per_failure=5, perturb=0.2)
    assert len(tasks) == 10
    seeds = [t["seed"] for t in tasks]
    assert len(set(seeds)) == 10 and all(s in splits.TARGETED and s in splits.TRAIN for s in seeds)
    first = tasks[0]
    assert first["adversary"] == CUT_IN["adversary"] and first["density"] == 0.5
    assert first["sensor_faults"] == CUT_IN["faults"] and first["source"]["variant"] == 0
    moved = tasks[1:5]
    assert any(t["adversary"] != CUT_IN["adversary"] for t in moved)
    for t in tasks:
        assert RANGES["density"][0] <= t["density"] <= RANGES["density"][1]
        assert 3.0 <= t["adversary"]["cut_gap_m"] <= 13.0
        assert t["scenario"] == "cut_in" and t["clutter"] == "low"
    assert tasks[5]["detector_faults"] == {"fault_blackout": True, "fault_onset_s": 1.0}
    assert tasks == targeted_tasks(_summary(CUT_IN, BLACKOUT), per_failure=5, perturb=0.2)


@pytest.mark.parametrize("summary, kwargs, match", [
    (_summary(CUT_IN, failure=False), {}, "found no failure"),
    ({"cases": [{"failure": True, "arm": "search", "trial": 0}]}, {}, "no 'options'"),
    (_summary(*[CUT_IN] * 30), {"per_failure": 4}, "exceed the 100 TARGETED seeds"),
    (_summary(CUT_IN), {"perturb": 2.0}, "perturb in"),
])
def test_bad_plans_are_refused(summary, kwargs, match):
    with pytest.raises(ValueError, match=match):
        targeted_tasks(summary, **kwargs)


def test_sensor_faults_and_adversary_reach_the_shard():
    kw = dict(duration_s=1.0, frame_stride=5, image_every=0, lidar_beams=8, lidar_azimuth_steps=128)
    clean = episode_arrays("cut_in", 901, **kw)
    faulty = episode_arrays("cut_in", 901, **kw, adversary={"cut_gap_m": 4.0},
                            sensor_faults={"point_dropout": {"fraction": 0.5, "onset_s": 0.5}})
    n_clean, n_faulty = np.diff(clean["point_offsets"]), np.diff(faulty["point_offsets"])
    assert n_faulty[0] == n_clean[0]                 # frame 0 (t = 0) before the onset
    assert (n_faulty[1:] < 0.7 * n_clean[1:]).all()  # half the points dropped after it
    meta = json.loads(str(faulty["meta_json"]))
    assert meta["adversary"] == {"cut_gap_m": 4.0}
    assert meta["sensor_faults"] == {"point_dropout": {"fraction": 0.5, "onset_s": 0.5}}


def test_cli_from_search(tmp_path):
    results = tmp_path / "search"
    results.mkdir()
    (results / "search.json").write_text(json.dumps(_summary(dict(CUT_IN, duration_s=0.5), BLACKOUT)))
    out = tmp_path / "data"
    proc = subprocess.run(
        [str(VENV_BIN / "tps-sim"), "dataset", "--from-search", str(results), "--per-failure", "1",
         "-o", str(out), "--workers", "1", "--image-every", "0", "--lidar-beams", "4",
         "--lidar-azimuth-steps", "64", "--no-progress"], capture_output=True, text=True,
        timeout=280)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["shards"] == 2 and summary["failed"] == 0 and summary["failures"] == 2
    assert summary["detector_faults_not_in_data"] == 1
    assert "1 of 2 episodes come from failures under a detector fault" in proc.stderr
    manifest = json.loads((out / "targeted-t-s4.json").read_text())
    assert [e["source"]["trial"] for e in manifest["episodes"]] == [0, 1]
    ep = load_episode(out / "train" / "cut_in" / f"seed{splits.TARGETED[0]}.npz")
    assert ep.meta["adversary"] == CUT_IN["adversary"]
    bad = subprocess.run([str(VENV_BIN / "tps-sim"), "dataset", "--from-search",
                          str(tmp_path / "nope.json"), "-o", str(out)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "--from-search: cannot read" in bad.stderr
