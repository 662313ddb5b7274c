"""`tps-sim` command line: help lists the scenarios; bad configuration -> exit 2 and one line
naming the field, never a traceback."""

from __future__ import annotations

import subprocess

import pytest
from sim_bridge_helpers import VENV_BIN
from tps_sim.world import SCENARIOS

EXIT_BAD_CONFIG = 2
CLI_TIMEOUT_S = 60


def tps_sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "tps-sim"), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)


def test_help_lists_every_scenario_and_subcommand():
    proc = tps_sim("--help")
    assert proc.returncode == 0
    for name in SCENARIOS:
        assert f"  {name} " in proc.stdout, name
    for sub in ("record", "dataset", "run"):
        assert sub in proc.stdout


@pytest.mark.parametrize("args,field", [
    (("record", "--scenario", "atlantis", "-o", "x.mcap"), "scenario"),
    (("record", "--density", "-0.5", "-o", "x.mcap"), "density"),
    (("record", "--lidar-beams", "0", "-o", "x.mcap"), "lidar_beams"),
    (("record", "--clutter", "extreme", "-o", "x.mcap"), "clutter"),
    (("record", "--faults", '{"lidar_blackout": {"bogus": 1}}', "-o", "x.mcap"), "bogus"),
    (("dataset", "--scenarios", "atlantis", "-o", "out"), "atlantis"),
    (("dataset", "--density", "-1", "-o", "out"), "density"),
    (("dataset", "--lidar-beams", "0", "-o", "out"), "beams"),
    (("dataset", "--episodes", "0", "-o", "out"), "--episodes"),
    (("run", "--scenario", "atlantis"), "scenario"),
])
def test_bad_configuration_names_the_field(tmp_path, args, field):
    proc = subprocess.run([str(VENV_BIN / "tps-sim"), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, cwd=tmp_path)
    assert proc.returncode == EXIT_BAD_CONFIG, proc.stderr
    assert field in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written on a configuration error"


@pytest.mark.ros
def test_run_starts_the_bridge(tmp_path):
    log = tmp_path / "run_log.json.gz"
    proc = tps_sim("run", "--scenario", "merge", "--seed", "3", "--ego-driver", "expert",
                   "--duration", "0.3", "--exit-on-end", "--episode-log", str(log),
                   "--lidar-beams", "4", "--lidar-azimuth-steps", "64")
    assert proc.returncode == 0, proc.stderr
    from tps_sim.episode_log import load_episode_log

    data = load_episode_log(log)
    assert data["meta"]["ego_driver"] == "expert" and len(data["t_s"]) == 4
