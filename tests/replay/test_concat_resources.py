"""Joining bags end to end (tps_eval.replay.concat) and sampling a graph's CPU and memory
(tps_eval.replay.resources): the pieces of benchmarks/bench_e2e.py."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from replay_bags import SIM_BAG, SIM_LIDAR
from tps_eval.replay.bagio import BagError, InputBag, _is_latched, open_reader, read_messages
from tps_eval.replay.concat import concatenate, shift_times
from tps_eval.replay.config import parse_config
from tps_eval.replay.resources import ResourceSampler


def _stamps(path, topic):
    return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for t, _, _, m in read_messages(path, {topic})]


def test_two_bags_join_into_one_whose_stamps_only_go_forward(tmp_path):
    out = tmp_path / "joined.mcap"
    info = concatenate([SIM_BAG, SIM_BAG], out, gap_s=0.1)
    with open_reader(SIM_BAG) as r:
        n, start, end = r.message_count, r.start_time, r.end_time
        latched_src = {c.topic for c in r.connections if _is_latched(c)}
    assert info["messages"] == 2 * n and [s["messages"] for s in info["segments"]] == [n, n]
    offset = end + 100_000_000 - start
    assert info["segments"][1]["offset_s"] == pytest.approx(offset / 1e9)
    assert info["duration_s"] == pytest.approx((2 * (end - start) + 100_000_000) / 1e9)
    with open_reader(out) as r:
        assert r.message_count == 2 * n
        assert {c.topic for c in r.connections if _is_latched(c)} == latched_src   # route, map stay latched
        log_times = [t for _, t, _ in r.messages()]
    assert log_times == sorted(log_times)
    # every lidar header stamp of the second drive is the first drive's, moved by the offset
    src, joined = _stamps(SIM_BAG, SIM_LIDAR), _stamps(out, SIM_LIDAR)
    assert joined == src + [s + offset for s in src]
    # /tf transforms (stamps inside a list) and /clock move too
    tf = [tr.header.stamp.sec * 10**9 + tr.header.stamp.nanosec
          for _, _, _, m in read_messages(out, {"/tf"}) for tr in m.transforms]
    clock = [m.clock.sec * 10**9 + m.clock.nanosec for _, _, _, m in read_messages(out, {"/clock"})]
    assert tf == sorted(tf) and clock == sorted(clock) and clock[-1] > end
    # the replayer plays it as one drive: twice the frames, no stamp going back
    with InputBag(out, parse_config({})) as bag:
        frames = [f for _, f in bag.frames() if f is not None]
        assert sum(bag.stats.non_monotonic.values()) == 0
    with InputBag(SIM_BAG, parse_config({})) as bag:
        single = [f for _, f in bag.frames() if f is not None]
    assert len(frames) == 2 * len(single)


def test_concatenate_refuses_bad_input(tmp_path):
    with pytest.raises(BagError, match="no input bag"):
        concatenate([], tmp_path / "a.mcap")
    with pytest.raises(BagError, match="no such file"):
        concatenate([tmp_path / "missing.mcap"], tmp_path / "b.mcap")
    with pytest.raises(ValueError, match="gap_s"):
        concatenate([SIM_BAG], tmp_path / "c.mcap", gap_s=0.0)
    (tmp_path / "d.mcap").write_bytes(b"")
    with pytest.raises(FileExistsError):
        concatenate([SIM_BAG], tmp_path / "d.mcap")


def test_shift_times_moves_every_stamp_and_refuses_negative_ones():
    from tps_sim.recording import build_typestore

    store = build_typestore()
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    h, unset = Header(stamp=Time(sec=5, nanosec=900_000_000), frame_id="map"), Time(sec=0, nanosec=0)
    assert shift_times(h, 200_000_000) == 1 and (h.stamp.sec, h.stamp.nanosec) == (6, 100_000_000)
    assert shift_times(unset, 10**9) == 1 and (unset.sec, unset.nanosec) == (1, 0)   # frame 0 of a drive
    with pytest.raises(ValueError, match="negative"):
        shift_times(h, -10 * 10**9)


def test_resource_sampler_sees_a_busy_process_and_a_restart():
    code = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"
    busy = subprocess.Popen([sys.executable, "-c", code])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    pids = {"busy": busy.pid, "idle": idle.pid}
    try:
        sampler = ResourceSampler(lambda: dict(pids), period_s=0.2).start()
        time.sleep(1.5)
        restarted = subprocess.Popen([sys.executable, "-c", code])
        pids["busy"] = restarted.pid          # a respawned node: same label, new pid
        time.sleep(1.5)
        sampler.stop()
        summary = sampler.summary()
    finally:
        for p in (busy, idle, locals().get("restarted")):
            if p is not None:
                p.kill()
                p.wait()
    nodes = summary["nodes"]
    assert set(nodes) == {"busy", "idle"}
    # relative: on a loaded 2-core host the spinning process gets what the scheduler leaves it
    assert nodes["busy"]["cpu_pct_mean"] > max(5.0, 5 * nodes["idle"]["cpu_pct_mean"])
    assert nodes["busy"]["rss_mb_peak"] > 1.0 and nodes["idle"]["rss_mb_peak"] > 1.0
    assert summary["total"]["rss_mb_peak"] >= nodes["busy"]["rss_mb_peak"]
    with pytest.raises(ValueError, match="period_s"):
        ResourceSampler(dict, period_s=0.0)
