"""``tps-eval search`` for real (issue 16): closed-loop episodes of the fallback over DDS, an
optuna study in SQLite, and a hard interruption (SIGKILL of the whole process group mid-episode)
that the same command resumes without losing or repeating finished episodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tps_eval.executors import default_domain_base

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/data/search/tiny.yaml"
START_TIMEOUT_S = 240.0


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "tps_eval.cli", "search", "--space", str(TINY), "--budget", "2",
            "--seed", "5", "--executor", "local", "--no-random", "--no-gifs", "--quiet",
            "--out", str(out), "--domain-base", str(default_domain_base())]


def _trials(out: Path) -> list:
    import optuna

    db = out / "study.db"
    if not db.is_file():
        return []
    try:
        return optuna.load_study(study_name="search", storage=f"sqlite:///{db}").get_trials()
    except Exception:  # noqa: BLE001 - the study may not be created yet
        return []


def test_an_interrupted_search_resumes_where_it_stopped(tmp_path):
    import optuna

    S = optuna.trial.TrialState
    out = tmp_path / "search"
    proc = subprocess.Popen(_command(out), cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        # wait for trial 0 to finish and trial 1's episode to be under way
        while time.monotonic() < deadline and proc.poll() is None:
            trials = _trials(out)
            if len(trials) >= 2 and trials[0].state == S.COMPLETE and trials[1].state == S.RUNNING:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no finished first episode in {START_TIMEOUT_S:.0f} s (exit "
                        f"{proc.poll()}): {proc.stderr.read().decode()[-2000:]}")
        time.sleep(2.0)   # the graph of trial 1 is up
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the driver, its worker and the episode in flight
        proc.wait(timeout=30)
    before = _trials(out)
    assert [t.state for t in before] == [S.COMPLETE, S.RUNNING]
    first, cut = before[0], before[1]

    done = subprocess.run(_command(out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 interrupted trial(s) queued again" in done.stderr
    after = _trials(out)
    # trial 0 kept as it was; trial 1 closed as interrupted; its point and seed re-run as trial 2
    assert after[0].state == S.COMPLETE and after[0].value == first.value
    assert after[0].params == first.params
    assert after[1].state == S.FAIL and "episode_error" not in after[1].user_attrs
    assert after[2].state == S.COMPLETE
    assert after[2].params == cut.params
    assert after[2].user_attrs["seed"] == cut.user_attrs["seed"]
    assert len(after) == 3
    summary = json.loads((out / "search.json").read_text())
    assert summary["budget"] == 2 and summary["episodes"] == 2 and summary["errors"] == 0
    assert [c["trial"] for c in summary["cases"]] == [0, 2]
    for c in summary["cases"]:
        assert -1.0 <= c["metric"] <= 1.0
        assert Path(c["episode_dir"], "metrics.json").is_file()
    assert (out / "report.md").is_file() and (out / "boundary" / "scenario.png").is_file()
