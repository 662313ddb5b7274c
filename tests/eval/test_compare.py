"""tps-eval compare: per-episode differences between two closed-loop runs."""

import copy
import json

from tps_eval import compare
from tps_eval.cli import main


def _run(pdms: float, latency: float) -> dict:
    ep = {"spec": {"case_id": "highway", "seed": 9000, "configuration": "stack"}, "status": "ok",
          "metrics": {"pdm_score": pdms, "at_fault_collisions": 0, "e2e_latency_p50_ms": latency,
                      "trajectories_heard": 300}}
    return {"episodes": [ep]}


def test_identical_runs_have_no_difference_even_with_other_latencies(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_run(0.9, 20.0)))
    b.write_text(json.dumps(_run(0.9, 35.0)))
    assert main(["compare", str(a), str(b)]) == 0
    assert "0 differ" in capsys.readouterr().out


def test_a_changed_metric_and_a_missing_episode_are_reported(tmp_path, capsys):
    ra, rb = _run(0.9, 20.0), _run(0.9 + 1e-12, 20.0)
    extra = copy.deepcopy(ra["episodes"][0])
    extra["spec"]["seed"] = 9001
    ra["episodes"].append(extra)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(ra))
    b.write_text(json.dumps(rb))
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "highway-s9000-stack" in out and "pdm_score" in out and "highway-s9001-stack" in out
    diffs = compare.compare_runs(compare.load_run(a), compare.load_run(b), rel_tol=1e-9)
    assert [d.key for d in diffs] == ["episode"]


def test_a_metric_only_one_run_reports_is_listed_not_a_difference(tmp_path, capsys):
    ra, rb = _run(0.9, 20.0), _run(0.9, 20.0)
    rb["episodes"][0]["metrics"]["tlc"] = 1.0
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(ra))
    b.write_text(json.dumps(rb))
    assert main(["compare", str(a), str(b)]) == 0
    assert "['tlc']" in capsys.readouterr().out
