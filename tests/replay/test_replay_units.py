"""tps_eval.replay without ROS: the configuration and regression table (errors name the field), the
input bag's adaptation (remaps, field renames, static transforms, unreadable and out-of-order
messages counted), the regression budgets (latency, drops, each node's processing time against the
ERROR budget of its parameter file)."""

from __future__ import annotations

import pytest
from replay_bags import (
    FOREIGN_FRAME,
    FOREIGN_LIDAR,
    SIM_BAG,
    SIM_LIDAR,
    foreign_config_text,
    write_foreign_bag,
)
from tps_eval.replay.bagio import BagError, InputBag
from tps_eval.replay.config import ReplayConfigError, parse_config
from tps_eval.replay.regression import (
    ProcessingBudget,
    RegressionCase,
    check_budgets,
    load_cases,
    parse_cases,
    processing_budgets,
)

NODES = ("perception", "fallback")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    return write_foreign_bag(SIM_BAG, tmp_path_factory.mktemp("foreign") / "bag")


def _frames(bag: InputBag):
    out = []
    for _, frame in bag.frames():
        if frame is not None:
            out.append(frame)
    return out


@pytest.mark.parametrize("data, names", [
    ({"remapp": {}}, "unknown keys ['remapp']"),
    ({"static_transforms": [{"parent": "base_link", "child": "velodyne", "xyz_rpy": [1, 2, 3]}]},
     "static_transforms[0].xyz_rpy"),
    ({"time": {"non_monotonic": "sort"}}, "time.non_monotonic"),
    ({"lidar": {"fields": {"reflectivity": 3}}}, "lidar.fields"),
    ({"lockstep": {"timeout_s": 0}}, "lockstep"),
])
def test_config_errors_name_the_field(data, names):
    with pytest.raises(ReplayConfigError) as info:
        parse_config(data, "x.yaml")
    assert names in str(info.value)


def test_simulator_bag_needs_no_configuration():
    with InputBag(SIM_BAG, parse_config({})) as bag:
        frames = _frames(bag)
        assert len(frames) == 31
        assert sum(bag.stats.unreadable.values()) == 0
        assert all(f.trigger.topic == SIM_LIDAR for f in frames)
        assert [f.index for f in frames] == list(range(31))


def test_foreign_bag_adapted_by_configuration(foreign):
    import yaml

    cfg = parse_config(yaml.safe_load(foreign_config_text(NODES)), "foreign.yaml")
    with InputBag(foreign.path, cfg) as bag:
        frames = _frames(bag)
        stats = bag.stats
        edges = {tf.child_frame_id: tf for tf in bag.static_transforms()}
    assert len(frames) == foreign.frames
    assert sum(stats.unreadable.values()) == foreign.corrupt                   # counted, not fatal
    assert stats.non_monotonic[SIM_LIDAR] == foreign.out_of_order               # dropped
    assert stats.adapted[SIM_LIDAR] == foreign.frames
    cloud = frames[0].trigger.msg
    assert frames[0].trigger.bag_topic == FOREIGN_LIDAR and frames[0].trigger.topic == SIM_LIDAR
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring", "time"]
    assert cloud.header.frame_id == FOREIGN_FRAME
    heights = {f.trigger.msg.height for f in frames}
    assert heights == {1, 2}, heights        # organised and unorganised clouds both played
    assert FOREIGN_FRAME in edges and edges[FOREIGN_FRAME].header.frame_id == "base_link"


def test_configured_static_transform_wins_over_the_bag(foreign):
    import yaml

    data = yaml.safe_load(foreign_config_text(NODES))
    data["static_transforms"] = [{"parent": "base_link", "child": FOREIGN_FRAME, "xyz_rpy": [0.5, 0, 2, 0, 0, 0]}]
    with InputBag(foreign.path, parse_config(data)) as bag:
        _frames(bag)
        raw = bag.tf_static_raw()
        msg = bag.typestore.deserialize_cdr(raw, "tf2_msgs/msg/TFMessage")
    edge = next(tf for tf in msg.transforms if tf.child_frame_id == FOREIGN_FRAME)
    assert (edge.transform.translation.x, edge.transform.translation.z) == (0.5, 2.0)


def test_bag_without_the_lidar_topic_is_refused_naming_it(foreign):
    with pytest.raises(BagError, match="no lidar topic '/carla/ego_vehicle/lidar'"):
        with InputBag(foreign.path, parse_config({})):
            pass
    with pytest.raises(BagError, match="no such file"):
        InputBag(SIM_BAG.with_name("missing.mcap"), parse_config({}))


def test_shipped_regression_table_parses():
    cases = load_cases()
    assert cases and all(c.outputs and c.nodes for c in cases)
    for c in cases:
        assert c.path(c.bag).is_file(), c.bag
        assert c.path(c.reference).is_file(), c.reference


def test_regression_table_errors_name_the_case_and_field():
    row = {"name": "a", "bag": "b.mcap", "reference": "r.mcap", "nodes": ["perception"], "inputs": ["/x"],
           "outputs": ["/y"], "latency_budget_ms": {"planner": 100}}
    with pytest.raises(ReplayConfigError, match=r"case 'a'.latency_budget_ms: nodes \['planner'\]"):
        parse_cases({"cases": [row]})
    with pytest.raises(ReplayConfigError, match="missing keys"):
        parse_cases({"cases": [{"name": "a"}]})
    with pytest.raises(ReplayConfigError, match="tolerances"):
        parse_cases({"cases": [dict(row, latency_budget_ms={}, tolerances={"x": -1})]})


def test_budgets_fail_on_latency_drops_and_missing_outputs():
    case = RegressionCase(name="c", bag="b", reference="r", nodes=("perception", "fallback"), inputs=("/x",),
                          outputs=("/det",), latency_budget_ms={"perception": 100.0}, max_dropped=0)
    ok = {"frames": 3, "dropped": {"perception": 0, "fallback": 0},
          "latency_ms": {"perception": {"p50": 50.0, "p95": 400.0}}, "recorded": {"/det": 3}}
    assert check_budgets(case, ok) == []
    bad = {"frames": 3, "dropped": {"perception": 0, "fallback": 1},
           "latency_ms": {"perception": {"p50": 150.0, "p95": 160.0, "max": 170.0}}, "recorded": {"/det": 2}}
    failures = check_budgets(case, bad)
    assert len(failures) == 3
    assert any("fallback: 1 frame(s) dropped" in f for f in failures)
    assert any("perception: latency p50 150 ms over the budget 100 ms (p95 160 ms, max 170 ms)" in f for f in failures)
    assert any("/det: 2 message(s) recorded for 3 frame(s)" in f for f in failures)


def test_processing_budget_fails_naming_node_median_and_budget():
    case = RegressionCase(name="c", bag="b", reference="r", nodes=("perception", "fallback"), inputs=("/x",),
                          outputs=("/det",))
    budgets = {"perception": ProcessingBudget("perception", 100.0, "processing_error_budget_ms of p.yaml"),
               "fallback": ProcessingBudget("fallback", 100.0, "processing_error_budget_ms of f.yaml")}
    report = {"frames": 3, "dropped": {}, "latency_ms": {}, "recorded": {"/det": 3},
              "processing_ms": {"perception": {"p50": 40.0, "p95": 44.0, "max": 45.0, "n": 3},
                                "fallback": {"p50": 99.9, "p95": 130.0, "max": 130.0, "n": 3}}}
    assert check_budgets(case, report, budgets) == []        # median within; a tail over is allowed
    report["processing_ms"]["fallback"] = {"p50": 120.5, "p95": 130.0, "max": 130.0, "n": 3}
    report["run"] = {"load_avg": [6.1, 5.0, 4.0], "host_cpus": 2}
    (failure,) = check_budgets(case, report, budgets)
    assert failure.startswith("fallback: processing time p50 120.5 ms over its error budget 100 ms")
    assert "f.yaml" in failure and "host load 6.1 on 2 CPUs" in failure
    del report["processing_ms"]["perception"]
    failures = check_budgets(case, report, budgets)
    assert any(f.startswith("perception: no processing_time diagnostic recorded") for f in failures)


def test_processing_budgets_come_from_the_parameter_files(tmp_path):
    """The shipped case: each node's processing_error_budget_ms of its parameter file; the monitor's
    own budget is node_processing_error_budget_ms; inline graph parameters and the case's
    processing_budget_ms win over the file."""
    import yaml
    from tps_eval.replay.config import repo_root

    def file_value(name: str, key: str) -> float:
        return float(yaml.safe_load((repo_root() / "config" / f"{name}.param.yaml").read_text())
                     ["/**"]["ros__parameters"][key])

    (case,) = [c for c in load_cases() if c.name == "cut_in_perception_fallback"]
    budgets = processing_budgets(case)
    assert set(budgets) == set(case.nodes)
    for node, param_file in (("perception", "perception_node"), ("fallback", "fallback_node"),
                             ("trajectory_arbiter", "trajectory_arbiter")):
        assert budgets[node].ms == file_value(param_file, "processing_error_budget_ms")
        assert budgets[node].source == f"processing_error_budget_ms of config/{param_file}.param.yaml"
    monitor = RegressionCase(name="m", bag="b", reference="r", nodes=("monitor",), inputs=("/x",), outputs=("/y",),
                             graph="config/graph/stack.yaml")
    assert processing_budgets(monitor)["monitor"].ms == file_value("monitor_node", "node_processing_error_budget_ms")
    graph = yaml.safe_load((repo_root() / "config" / "graph" / "stack_carla.yaml").read_text())
    for n in graph["nodes"]:
        n["params"] = [str(repo_root() / p) for p in n.get("params", [])]
        if n["name"] == "fallback":
            n.setdefault("parameters", {})["processing_error_budget_ms"] = 7.5
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump(graph))
    inline = RegressionCase(name="g", bag="b", reference="r", nodes=("perception", "fallback"), inputs=("/x",),
                            outputs=("/y",), graph=str(tmp_path / "graph.yaml"),
                            processing_budget_ms={"perception": 2.0})
    budgets = processing_budgets(inline)
    assert budgets["fallback"].ms == 7.5 and budgets["fallback"].source.endswith("the graph's parameters")
    assert budgets["perception"].ms == 2.0 and "case 'g'" in budgets["perception"].source
    row = {"name": "a", "bag": "b.mcap", "reference": "r.mcap", "nodes": ["perception"], "inputs": ["/x"],
           "outputs": ["/y"]}
    assert parse_cases({"cases": [dict(row, processing_budget_ms={"perception": 5})]})[0].processing_budget_ms == \
        {"perception": 5.0}
    with pytest.raises(ReplayConfigError, match=r"case 'a'.processing_budget_ms: nodes \['planner'\]"):
        parse_cases({"cases": [dict(row, processing_budget_ms={"planner": 5})]})
    with pytest.raises(ReplayConfigError, match=r"case 'a'.processing_budget_ms: expected node -> milliseconds"):
        parse_cases({"cases": [dict(row, processing_budget_ms={"perception": 0})]})


def test_shipped_foreign_example_configuration_loads():
    from tps_eval.replay.config import load_config, load_replay_graph, repo_root

    cfg = load_config(repo_root() / "config" / "replay" / "foreign_lidar_example.yaml")
    graph, skipped = load_replay_graph(cfg)
    assert [n.name for n in graph.nodes] == list(cfg.nodes) and skipped == []
    assert cfg.lidar_fields == {"reflectivity": "intensity"} and cfg.static_transforms[0].child == FOREIGN_FRAME


def _known_topics() -> set[str]:
    """Every topic of the CARLA-contract graph (its remaps), the bridge's, and the markers'."""
    import yaml
    from tps_eval.replay.config import MARKERS_TOPIC, repo_root
    from tps_sim.conversions import TOPIC_TYPES

    graph = yaml.safe_load((repo_root() / "config" / "graph" / "stack_carla.yaml").read_text())
    topics = {t for n in graph["nodes"] for t in (n.get("remaps") or {}).values()}
    return topics | set(TOPIC_TYPES) | {MARKERS_TOPIC, "/diagnostics"}


def test_rviz_and_foxglove_configs_name_real_topics():
    """The shipped viewer configurations parse and every topic they show exists in the stack's
    topic contract (a renamed topic breaks this test, not a viewer silently)."""
    import json

    import yaml
    from tps_eval.replay.config import MARKERS_TOPIC, repo_root

    known = _known_topics()
    rviz = yaml.safe_load((repo_root() / "config" / "rviz" / "tps.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    rviz_topics = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    assert MARKERS_TOPIC in rviz_topics and rviz_topics <= known, rviz_topics - known
    layout = json.loads((repo_root() / "config" / "foxglove" / "tps_replay.json").read_text())
    panels = layout["configById"]
    fox_topics = set(panels["3D!tps"]["topics"])
    for cfg in panels.values():
        fox_topics |= {p["value"].split(".")[0] for p in cfg.get("paths", [])}
        if "topicPath" in cfg:
            fox_topics.add(cfg["topicPath"])
    assert MARKERS_TOPIC in fox_topics and fox_topics <= known, fox_topics - known


def test_restamp_and_out_of_order_stamps(tmp_path):
    """A driver whose header stamps are off (a clock 1000 s ahead, one stamp going back): with
    ``time.restamp`` the header stamps become bag time and the frames follow the bag; without it the
    stamp that goes back is counted and dropped (``keep`` plays it)."""
    import numpy as np
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tps_sim.recording import build_typestore

    store = build_typestore()
    cls = store.types
    bag = tmp_path / "skewed"
    writer = Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = writer.add_connection(SIM_LIDAR, "sensor_msgs/msg/PointCloud2", typestore=store)
    header_s = [1000.0, 1000.1, 1000.05, 1000.3]          # the third goes back
    for k, hs in enumerate(header_s):
        hdr = cls["std_msgs/msg/Header"](stamp=cls["builtin_interfaces/msg/Time"](sec=int(hs),
                                         nanosec=int(round((hs % 1) * 1e9))), frame_id="ego_vehicle/lidar")
        msg = cls["sensor_msgs/msg/PointCloud2"](header=hdr, height=1, width=0, fields=[], is_bigendian=False,
                                                  point_step=16, row_step=0, data=np.zeros(0, np.uint8),
                                                  is_dense=True)
        writer.write(conn, k * 100_000_000, store.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"))
    writer.close()

    def frames_of(time_cfg):
        with InputBag(bag, parse_config({"time": time_cfg})) as b:
            return [(f.stamp_ns, f.clock_ns) for f in _frames(b)], dict(b.stats.non_monotonic)

    restamped, back = frames_of({"restamp": True})
    assert restamped == [(k * 100_000_000, k * 100_000_000) for k in range(4)] and back == {}
    dropped, back = frames_of({"non_monotonic": "drop"})
    assert len(dropped) == 3 and back == {SIM_LIDAR: 1}
    kept, back = frames_of({"non_monotonic": "keep", "clock": "header"})
    assert len(kept) == 4 and back == {SIM_LIDAR: 1}
    assert [c for _, c in kept] == sorted(c for _, c in kept)      # /clock never goes back


def test_a_message_logged_after_its_frame_is_played_with_it(tmp_path):
    """A recorder logs each message when it receives it: on a busy host the evaluation's own bag
    had the odometry of stamp 1.6 s logged after the clock and lidar of 1.7 s. Played in bag order,
    frame 1.6 went out without its odometry and the fallback waited for it until the lockstep
    timeout. Here two odometry messages of the simulator bag are logged late (between two frames,
    and at the next lidar's own instant after it): each is played with the frame of its stamp."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tps_sim.recording import build_typestore

    odom = "/carla/ego_vehicle/odometry"
    store = build_typestore()
    with AnyReader([SIM_BAG], default_typestore=store) as reader:
        rows = [(c.topic, c.msgtype, c.ext.offered_qos_profiles, t, raw) for c, t, raw in reader.messages()]
    lidar_t = sorted({t for topic, _, _, t, _ in rows if topic == SIM_LIDAR})
    late = {lidar_t[5]: lidar_t[5] + 50_000_000,     # logged between frame 5 and frame 6
            lidar_t[8]: lidar_t[9]}                  # logged at frame 9's instant, after its lidar
    bag = tmp_path / "late"
    writer = Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conns: dict = {}
    delayed = []
    for topic, msgtype, qos, t, raw in rows:
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=qos)
        if topic == odom and t in late:
            delayed.append((late[t], topic, raw))
            continue
        while delayed and delayed[0][0] < t:
            when, top, r = delayed.pop(0)
            writer.write(conns[top], when, r)
        writer.write(conns[topic], t, raw)
        if topic == SIM_LIDAR and delayed and delayed[0][0] == t:      # right after the lidar of its instant
            when, top, r = delayed.pop(0)
            writer.write(conns[top], when, r)
    writer.close()

    def odom_stamps(frame):
        return [m.stamp_ns for m in frame.messages if m.topic == odom]

    with InputBag(bag, parse_config({})) as b:
        frames = _frames(b)
        moved = dict(b.stats.moved_late)
    with InputBag(SIM_BAG, parse_config({})) as b:
        reference = _frames(b)
    assert moved.get(odom) == 2, moved
    assert len(frames) == len(reference) == 31
    for k in (5, 8):
        assert frames[k].stamp_ns in odom_stamps(frames[k]), (k, odom_stamps(frames[k]))
        assert frames[k].stamp_ns not in odom_stamps(frames[k + 1])
    for f, ref in zip(frames, reference, strict=True):       # every frame plays the same odometry
        assert sorted(odom_stamps(f)) == sorted(odom_stamps(ref)), f.index
