"""tps_sim.episode_log: writer and validating reader agree, in both formats, NaN latencies included."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from tps_sim.episode_log import (
    BOX_COLUMNS,
    LOG_KEYS,
    STATIC_COLUMNS,
    EpisodeLog,
    EpisodeLogError,
    load_episode_log,
    log_from_arrays,
)

STEPS = 4
ROUTE = np.array([[0.0, 0.0], [50.0, 0.0], [80.0, 10.0]])
META = {"scenario": "unit", "seed": 9000, "dt_s": 0.1, "end_reason": "duration"}
LATENCY_S = 0.0125


@dataclass
class _Agent:
    id: int
    x: float
    class_id: int = 1
    yaw: float = 0.25
    center: tuple = ()
    size: tuple = (4.5, 1.9, 1.5)
    velocity: tuple = (5.0, 0.5)
    speed_mps: float = 5.02
    accel_mps2: float = -0.5
    yaw_rate: float = 0.01

    def __post_init__(self) -> None:
        self.center = (self.x, 2.0, 0.75)


@dataclass
class _Statics:
    ids: np.ndarray = field(default_factory=lambda: np.array([1_000_000, 1_000_001]))
    centers: np.ndarray = field(default_factory=lambda: np.array([[10.0, 8.0, 2.0], [30.0, -8.0, 0.5]]))
    sizes: np.ndarray = field(default_factory=lambda: np.array([[0.3, 0.3, 4.0], [4.5, 1.9, 1.0]]))
    yaws: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.5]))
    materials: np.ndarray = field(default_factory=lambda: np.array([10, 14]))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class _State:
    ego: _Agent
    agents: tuple
    collisions: tuple
    route_progress_m: float


@dataclass
class _Scene:
    statics: _Statics


@dataclass
class _Frame:
    step: int
    t_s: float
    stamp_s: float
    state: _State
    scene: _Scene | None
    control: dict
    events: tuple


def make_log() -> EpisodeLog:
    """Four steps: agents come and go (step 2 has none), a collision at step 3, latencies only
    for steps 1 and 3 (NaN elsewhere)."""
    log = EpisodeLog()
    for k in range(STEPS):
        agents = () if k == 2 else tuple(_Agent(7 + j, 10.0 * k + j) for j in range(k + 1))
        state = _State(_Agent(0, 2.0 * k), agents, (7,) if k == 3 else (), 2.0 * k)
        control = {"throttle": 0.1 * k, "steer": -0.05, "brake": 0.0, "hand_brake": False,
                   "reverse": False}
        frame = _Frame(k, 0.1 * k, 0.1 * k, state, _Scene(_Statics()) if k == 0 else None, control,
                       ("step_timeout",) if k == 2 else ())
        log.add(frame, control_received=k > 0, step_timeout=k == 2, wall_time_s=100.0 + k)
        if k in (1, 3):
            log.set_latency(k, LATENCY_S)
    return log


@pytest.mark.parametrize("suffix", ["npz", "json.gz"])
def test_round_trip(tmp_path, suffix):
    log = make_log()
    written = log.arrays(META, ROUTE)
    back = load_episode_log(log.write(tmp_path / f"log.{suffix}", META, ROUTE))
    for key, (dtype, _) in LOG_KEYS.items():
        if dtype is str:
            assert back[key] == str(written[key]), key
            continue
        assert back[key].dtype == np.dtype(dtype), key
        assert back[key].shape == written[key].shape, key
        np.testing.assert_array_equal(back[key], written[key], err_msg=key)  # NaN == NaN here
    lat = back["e2e_latency_s"]
    assert np.isnan(lat[[0, 2]]).all() and lat[1] == lat[3] == LATENCY_S
    assert back["meta"]["box_columns"] == list(BOX_COLUMNS) and back["meta"]["num_steps"] == STEPS
    assert back["events"] == [[], [], ["step_timeout"], []]
    assert back["agent_offsets"].tolist() == [0, 1, 3, 3, 7]
    assert back["static_box"].shape == (2, len(STATIC_COLUMNS))


def test_json_gz_writes_null_for_missing_latency_and_reads_both_spellings(tmp_path):
    path = make_log().write(tmp_path / "log.json.gz", META, ROUTE)
    with gzip.open(path, "rt") as fh:
        doc = json.load(fh)
    assert doc["e2e_latency_s"][0] is None and doc["e2e_latency_s"][1] == LATENCY_S
    doc["e2e_latency_s"][2] = float("nan")   # a NaN literal (what json.dump writes by default)
    with gzip.open(path, "wt") as fh:
        json.dump(doc, fh)
    lat = load_episode_log(path)["e2e_latency_s"]
    assert np.isnan(lat[[0, 2]]).all() and lat.dtype == np.float64


def test_empty_episode_parts_keep_their_columns(tmp_path):
    """An episode without statics, agents or collisions: empty JSON lists lose their column
    count; the reader restores it."""
    log = EpisodeLog()
    frame = _Frame(0, 0.0, 0.0, _State(_Agent(0, 0.0), (), (), 0.0), None,
                   {"throttle": 0.0, "steer": 0.0, "brake": 0.0, "hand_brake": False,
                    "reverse": False}, ())
    log.add(frame, control_received=False, step_timeout=False, wall_time_s=0.0)
    for suffix in ("npz", "json.gz"):
        back = load_episode_log(log.write(tmp_path / f"e.{suffix}", META, ROUTE))
        assert back["agent_box"].shape == (0, len(BOX_COLUMNS))
        assert back["static_box"].shape == (0, len(STATIC_COLUMNS))
        assert back["collision_ids"].dtype == np.int64 and back["agent_id"].dtype == np.int64


def _broken(arrays: dict, **changes) -> dict:
    out = dict(arrays)
    for k, v in changes.items():
        if v is None:
            del out[k]
        else:
            out[k] = v
    return out


@pytest.mark.parametrize(("change", "message"), [
    ({"ego": None}, r"missing keys \['ego'\]"),
    ({"ego": np.zeros((STEPS, 11))}, "ego has shape"),
    ({"step_timeout": np.zeros(STEPS + 1, bool)}, "step_timeout has 5 rows, expected 4"),
    ({"agent_offsets": np.array([0, 1, 3, 3, 6])}, "agent_offsets must rise from 0 to"),
    ({"agent_class": np.ones(3, np.uint8)}, "agent_class has 3 rows, expected 7"),
    ({"events_json": json.dumps([[]])}, "events_json must list"),
    ({"meta_json": json.dumps(dict(META, box_columns=["x", "y"]))}, "box_columns"),
    ({"meta_json": "{not json"}, "not JSON"),
    ({"t_s": np.array(["a", "b", "c", "d"])}, "t_s is not float64"),
])
def test_validation_names_the_problem(change, message):
    arrays = make_log().arrays(META, ROUTE)
    with pytest.raises(EpisodeLogError, match=message):
        log_from_arrays(_broken(arrays, **change), "some/log.npz")


def test_reader_names_the_file(tmp_path):
    with pytest.raises(EpisodeLogError, match="does not exist"):
        load_episode_log(tmp_path / "none.npz")
    (tmp_path / "log.txt").write_text("x")
    with pytest.raises(EpisodeLogError, match="log.txt: unknown format"):
        load_episode_log(tmp_path / "log.txt")
    (tmp_path / "log.npz").write_bytes(b"not a zip")
    with pytest.raises(EpisodeLogError, match="log.npz: cannot read"):
        load_episode_log(tmp_path / "log.npz")
    arrays = make_log().arrays(META, ROUTE)
    del arrays["route"]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(EpisodeLogError, match=r"short.npz: missing keys \['route'\]"):
        load_episode_log(tmp_path / "short.npz")


# --- traffic lights (optional keys) ----------------------------------------------------------------
@dataclass
class _Head:
    id: int
    position: tuple
    yaw: float
    stop_xy: tuple
    lane_yaw: float
    stop_width_m: float


@dataclass
class _Lights:
    heads: tuple
    states: np.ndarray

    def __len__(self) -> int:
        return len(self.heads)


@dataclass
class _LitScene:
    statics: _Statics
    lights: _Lights


def make_light_log() -> EpisodeLog:
    """Two heads; the scene (with the lights) at every step; the second head turns red at 2."""
    heads = (_Head(1, (40.0, 0.0, 5.5), 3.14, (9.0, 0.0), 0.0, 3.2),
             _Head(2, (40.0, 3.2, 5.5), 3.14, (9.0, 3.2), 0.0, 3.2))
    log = EpisodeLog()
    for k in range(STEPS):
        state = _State(_Agent(0, 2.0 * k), (), (), 2.0 * k)
        scene = _LitScene(_Statics(), _Lights(heads, np.array([2, 2 if k < 2 else 0], np.uint8)))
        log.add(_Frame(k, 0.1 * k, 0.1 * k, state, scene, {"throttle": 0.0, "steer": 0.0,
                                                          "brake": 0.0, "hand_brake": False,
                                                          "reverse": False}, ()),
                control_received=True, step_timeout=False, wall_time_s=float(k))
    return log


@pytest.mark.parametrize("suffix", ["npz", "json.gz"])
def test_traffic_lights_round_trip(tmp_path, suffix):
    back = load_episode_log(make_light_log().write(tmp_path / f"l.{suffix}", META, ROUTE))
    assert back["light_id"].tolist() == [1, 2]
    assert back["light_head"].shape == (2, 4) and back["light_head"][1].tolist() == [40.0, 3.2, 5.5, 3.14]
    assert back["light_stop"][0].tolist() == [9.0, 0.0, 0.0, 3.2]
    assert back["light_state"].dtype == np.uint8
    assert back["light_state"].tolist() == [[2, 2], [2, 2], [2, 0], [2, 0]]


def test_logs_without_lights_have_no_light_keys(tmp_path):
    back = load_episode_log(make_log().write(tmp_path / "n.npz", META, ROUTE))
    assert "light_id" not in back


def test_light_keys_are_all_or_none_and_checked():
    arrays = make_light_log().arrays(META, ROUTE)
    partial = {k: v for k, v in arrays.items() if k != "light_stop"}
    with pytest.raises(EpisodeLogError, match="all or none"):
        log_from_arrays(partial, "x.npz")
    bad = dict(arrays, light_state=arrays["light_state"][:2])
    with pytest.raises(EpisodeLogError, match="light_state has shape"):
        log_from_arrays(bad, "x.npz")
