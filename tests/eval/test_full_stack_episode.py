"""The full stack closed loop (configuration `stack`, config/graph/sim_stack.yaml): perception, the
VLM planner, the confidence monitor, the fallback, the arbiter and the controller over real DDS,
one short episode whose planner process is killed mid-episode (fault_crash_at_s). The monitor
must judge the frames, see the crash (FALLBACK, naming the planner), and the episode must finish
and be scored (the crash is the injected one, not an error)."""

from __future__ import annotations

import pytest
import yaml

CRASH_AT_S = 2.0


@pytest.mark.ros
@pytest.mark.slow
def test_full_stack_episode_monitor_hands_over_when_the_planner_dies(tmp_path):
    from tps_eval.cli import run_suite
    from tps_eval.executors import default_domain_base

    suite = tmp_path / "full_stack.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "full_stack", "seeds": "0:1",                 # a TRAIN seed
        "configurations": ["stack"],
        "defaults": {"duration_s": 4.0, "density": 0.6, "clutter": "low", "route_goal_m": 40.0},
        "cases": [{"scenario": "highway", "id": "crash",
                   "node_parameters": {"planner": {"fault_crash_at_s": CRASH_AT_S}}}]}))
    final = run_suite(str(suite), None, tmp_path / "run", "local", 2, default_domain_base(), None,
                      bev=False, progress=False)
    (ep,) = [r for r in final["episodes"] if r["spec"]["configuration"] == "stack"]
    assert ep["status"] == "ok", ep["error"]
    m = ep["metrics"]
    assert m["injected_crashes"], "the planner's injected crash was not recorded"
    mon = m["monitor"]
    assert mon and len(mon["timeline"]) >= 20, "the monitor did not judge the frames"
    after = [row for row in mon["timeline"] if row[0] > CRASH_AT_S + 0.6]
    assert after and all(state in ("FALLBACK", "MINIMAL_RISK") for _, state, _ in after), \
        f"the monitor did not hand over after the planner died: {after}"
    # the hand-over after the crash (if the monitor was not already in FALLBACK) names the planner
    handover = [t for t in mon["transitions"] if t["t_s"] > CRASH_AT_S and t["to"] == "FALLBACK"]
    for t in handover:
        assert any("planner" in r for r in t["reasons"]), t
    assert m["at_fault_collisions"] == 0
    assert m["fallback_share"] is not None and m["fallback_share"] > 0.0
