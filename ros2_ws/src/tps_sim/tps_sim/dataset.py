"""Training datasets from the simulator: one ``.npz`` shard per expert-driven episode.

``tps-sim dataset --scenarios all --episodes N --split train -o data/sim`` (or
:func:`generate_episode`) simulates every step of an episode with SUMO driving the ego (the
expert), keeps every ``frame_stride``-th step as a *frame*, casts the lidar on frames, renders the
camera on every ``image_every``-th frame (stored at the camera's resolution, or downscaled to
``--image-size WxH`` with area averaging, a copy for learned image encoders), and computes futures
from the full step sequence. Traffic lights: every frame carries the ground-truth state of every
head and its stop line in that frame's base_link (see the table).

Size on disk (``np.savez_compressed``): see ``tps_sim/BRIDGE.md``, "Training datasets" (measured
per shard with and without images).

Splits: seeds come from :mod:`tps_sim.splits` (train 0..999, val 1000..1099, test 9000..9099); a
shard's split is the split of its seed -- test seeds are held out: never for training, tuning,
calibration or threshold choice. Clutter cycles with the seed (``seed % 4`` -> none, low, medium,
high) unless given.

Shard ``<out>/<split>/<scenario>/seed<seed>.npz`` (T frames, G ground-truth boxes in all)
===========================================================================================
===================  ===============  =====================================================
key                  shape / dtype    meaning
===================  ===============  =====================================================
meta_json            str              JSON: scenario, seed, split, clutter, density,
                                      instruction {text, command, exit_number,
                                      target_speed_mps}, dt_s, frame_stride, image_every,
                                      duration_s, num_frames, lidar (LidarParams), camera
                                      (CameraParams + K), lidar_frame, lidar_height_m,
                                      future_step_s, gt_box_columns, format_version
t_s                  (T,) float64     sim time of the frame [s]
points               (P, 4) float32   x, y, z [m], intensity in the LIDAR frame
                                      (base_link + 1.8 m up, REP-103) of every frame
point_offsets        (T+1,) int64     frame i's points: points[point_offsets[i]:[i+1]]
image                (Ti, H, W, 3)    uint8 RGB front camera (``ego_vehicle/rgb_front``) at the
                                      stored size (meta ``image_size``, ``image_K``)
image_frame_idx      (Ti,) int64      frame index of each image
light_id             (L,) int32       traffic-light head ids (CarlaTrafficLightInfo ids; L = 0
                                      without lights)
light_head           (L, 4) float32   head x, y, z [m], yaw [rad] (its lamps' facing) in map
light_stop           (L, 4) float32   stop line centre x, y [m], direction of travel [rad],
                                      width [m] in map
light_on_route       (L,) bool        the ego's route drives through that stop line
light_state          (T, L) uint8     state per frame: RED 0, YELLOW 1, GREEN 2, OFF 3
                                      (CarlaTrafficLightStatus)
light_stop_base      (T, L, 2, 2)     float32 stop-line end points (right, left) in base_link
                                      of that frame [m]
gt_offsets           (T+1,) int64     frame i's boxes: rows gt_offsets[i]:[i+1]
gt_boxes             (G, 9) float32   x, y, z, l, w, h, yaw, vx, vy in base_link of that frame
                                      (z = box-centre height above ground; vx, vy = velocity
                                      over ground expressed in base_link axes) [m, rad, m/s]
gt_class             (G,) uint8       1 car, 2 truck, 3 bus, 4 pedestrian, 5 cyclist
gt_id                (G,) int32       agent id, stable within the episode
gt_num_points        (G,) int32       lidar points of that frame that hit the box
gt_future            (G, 6, 2)        float32 future centres x, y at +0.5 .. +3.0 s in base_link
                                      of that frame [m]
gt_future_valid      (G, 6) bool      the agent still exists at that future time
ego_pose             (T, 3) float64   x, y [m], yaw [rad] of base_link in map
ego_speed            (T,) float32     [m/s]
ego_accel            (T,) float32     longitudinal acceleration [m/s^2]
ego_future           (T, 6, 3)        float32 expert ego x, y, yaw at +0.5 .. +3.0 s in
                                      base_link of that frame [m, rad]
ego_future_valid     (T, 6) bool      inside the episode
route                (R, 2) float64   ego route polyline in map [m]
static_boxes         (S, 8) float32   clutter/obstacles x, y, z, l, w, h, yaw, material
                                      (tps_sim.sensors.scene3d MAT_*) in map
===================  ===============  =====================================================

Every agent alive at a frame is listed (also far or occluded ones: filter by ``gt_num_points``
and range). Parked cars are static clutter here (``static_boxes``, material MAT_PARKED_CAR), not
agents; the detector's ground truth adds them as cars (``tps_eval.detector.data``). All randomness is seeded by the episode seed: a shard is reproducible.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tps_common.geometry import to_local, wrap_angle

from tps_sim import splits

CLUTTER_LEVELS = ("none", "low", "medium", "high")
FUTURE_COUNT = 6
FUTURE_STEP_S = 0.5
GT_BOX_COLUMNS = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")
FORMAT_VERSION = 2   # 2: traffic-light keys, image_size / image_K in meta
LIDAR_SEED_OFFSET = 1_000_003
FAULT_SEED_OFFSET = 2_000_003   # the sensor faults' stream, as the bridge's (tps_sim.bridge)


def clutter_for_seed(seed: int) -> str:
    """Default clutter level of a seed: ``seed % 4`` -> none, low, medium, high."""
    return CLUTTER_LEVELS[seed % len(CLUTTER_LEVELS)]


def shard_path(out_dir: str | os.PathLike, split: str, scenario: str, seed: int) -> Path:
    """``<out_dir>/<split>/<scenario>/seed<seed>.npz``."""
    return Path(out_dir) / split / scenario / f"seed{seed}.npz"


def to_base_link(xy: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
    """Map points (..., 2) [m] into the base_link frame of ``pose`` = (x, y, yaw)."""
    xy = np.asarray(xy, dtype=np.float64)
    return to_local(xy.reshape(-1, 2), pose[:2], pose[2]).reshape(xy.shape)


@dataclass(frozen=True)
class _StepRecord:
    """What is kept of every simulated step (light: futures need all steps)."""

    ego: tuple  # x, y, yaw
    agents: dict  # id -> (x, y)


def generate_episode(scenario: str, seed: int, out_dir: str | os.PathLike, *, duration_s: float = 20.0,
                     frame_stride: int = 5, image_every: int = 5, clutter: str | None = None,
                     density: float = 1.0, lidar_beams: int = 32, lidar_azimuth_steps: int = 1024,
                     overwrite: bool = True, image_size: tuple[int, int] | None = None,
                     adversary: dict | None = None, sensor_faults: dict | None = None,
                     instruction: str = "") -> Path:
    """Simulate one expert episode and write its shard.

    Args:
        scenario: a ``tps_sim.world.SCENARIOS`` name.
        seed: episode seed; its split (``tps_sim.splits.split_of``) names the output folder.
        out_dir: dataset root (shard at ``<out_dir>/<split>/<scenario>/seed<seed>.npz``).
        duration_s: episode length [s] (ends earlier at the route's end).
        frame_stride: keep every N-th simulation step (dt 0.1 s) as a frame.
        image_every: render the camera on every N-th kept frame (0 = never).
        clutter: none/low/medium/high; default ``clutter_for_seed(seed)``.
        density: traffic density factor.
        lidar_beams, lidar_azimuth_steps: lidar resolution.
        overwrite: False = return an existing shard untouched.
        image_size: (width, height) [px] the images are downscaled to (None: the camera's).
        adversary: ``WorldConfig.adversary`` overrides (None: drawn from the seed).
        sensor_faults: a ``tps_sim.sensors.faults.SensorFaultConfig`` mapping applied to the
            stored lidar points and images (None: clean sensors).
        instruction: ``WorldConfig.instruction`` ("" = the scenario's own, "seeded", or a
            variant key); the meta records the episode's instruction and the expert's lane
            change (``lane_change``: [t, from lane, to lane] or null).

    Returns:
        Path of the shard.

    Raises:
        ValueError / tps_sim.world.ConfigError: naming the bad argument.
    """
    split = splits.split_of(seed)
    path = shard_path(out_dir, split, scenario, seed)
    if path.exists() and not overwrite:
        return path
    arrays = episode_arrays(scenario, seed, duration_s=duration_s, frame_stride=frame_stride,
                            image_every=image_every, clutter=clutter, density=density,
                            lidar_beams=lidar_beams, lidar_azimuth_steps=lidar_azimuth_steps,
                            image_size=image_size, adversary=adversary, sensor_faults=sensor_faults,
                            instruction=instruction)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def scaled_camera_matrix(k: np.ndarray, src_size: tuple[int, int],
                         dst_size: tuple[int, int]) -> np.ndarray:
    """K (3, 3) of an image resized from ``src_size`` to ``dst_size`` (width, height) [px], pixel
    centres at integer coordinates before and after (OpenCV's resize convention)."""
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    out = np.array(k, np.float64).copy()
    out[0, 0], out[1, 1] = k[0, 0] * sx, k[1, 1] * sy
    out[0, 2], out[1, 2] = (k[0, 2] + 0.5) * sx - 0.5, (k[1, 2] + 0.5) * sy - 0.5
    return out


def episode_arrays(scenario: str, seed: int, *, duration_s: float = 20.0, frame_stride: int = 5,
                   image_every: int = 5, clutter: str | None = None, density: float = 1.0,
                   lidar_beams: int = 32, lidar_azimuth_steps: int = 1024,
                   image_size: tuple[int, int] | None = None, adversary: dict | None = None,
                   sensor_faults: dict | None = None, instruction: str = "") -> dict[str, np.ndarray]:
    """Simulate one expert episode and return the shard's arrays without writing anything (for
    evaluations on fresh held-out seeds). Arguments as :func:`generate_episode`; the result has
    exactly the shard's keys (``Episode(episode_arrays(...))`` gives the accessors)."""
    from tps_sim.sensors.camera import CameraModel
    from tps_sim.sensors.faults import SensorFaultConfig, SensorFaultInjector
    from tps_sim.sensors.lidar import LidarModel, LidarParams, to_xyzi
    from tps_sim.sensors.scene3d import LIDAR_HEIGHT_M
    from tps_sim.world import EgoControl, SimWorld, WorldConfig

    if int(frame_stride) < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if int(image_every) < 0:
        raise ValueError(f"image_every must be >= 0, got {image_every}")
    if image_size is not None:
        image_size = (int(image_size[0]), int(image_size[1]))
        if min(image_size) < 2:
            raise ValueError(f"image_size must be (width, height) >= 2 px, got {image_size}")
    split = splits.split_of(seed)
    clutter = clutter_for_seed(seed) if clutter is None else clutter
    lidar_params = LidarParams(beams=lidar_beams, azimuth_steps=lidar_azimuth_steps)
    lidar = LidarModel(lidar_params)
    camera = CameraModel() if image_every else None
    cfg = WorldConfig(scenario=scenario, seed=seed, density=density, clutter=clutter,
                      ego_driver="expert", duration_s=duration_s, adversary=dict(adversary or {}),
                      instruction=instruction)
    faults = SensorFaultConfig.from_dict(sensor_faults) if sensor_faults else None
    injector = SensorFaultInjector(faults, seed + FAULT_SEED_OFFSET) if faults else None
    world = SimWorld(cfg)
    dt = float(cfg.dt_s)
    neutral = EgoControl(throttle=0.0, steer=0.0, brake=0.0, hand_brake=False, reverse=False)
    rng = np.random.default_rng(seed + LIDAR_SEED_OFFSET)
    steps: list[_StepRecord] = []
    frames: list[dict] = []
    static_boxes = np.zeros((0, 8), np.float32)
    try:
        state = world.reset()
        while True:
            ego = state.ego
            steps.append(_StepRecord((float(ego.center[0]), float(ego.center[1]), float(ego.yaw)),
                                     {int(a.id): (float(a.center[0]), float(a.center[1]))
                                      for a in state.agents}))
            if state.step % frame_stride == 0:
                scene = world.scene3d(state)
                if not frames:
                    st = scene.statics
                    static_boxes = np.concatenate(
                        [st.centers, st.sizes, st.yaws[:, None],
                         st.materials[:, None].astype(np.float64)], axis=1).astype(np.float32)
                scan = lidar.scan(scene, rng)
                points, hit_id = to_xyzi(scan), scan.hit_id
                if injector is not None:   # per-point labels stay aligned with the kept points
                    kept, points = injector.lidar_mask(float(state.t_s), points)
                    hit_id = hit_id[kept]
                frame = {"step": len(steps) - 1, "t_s": float(state.t_s), "points": points,
                         "hit_id": hit_id, "state": state, "image": None}
                if camera is not None and len(frames) % image_every == 0:
                    image = camera.render(scene)
                    if injector is not None:
                        image = injector.apply_camera(float(state.t_s), image)
                    if image_size is not None and image_size != image.shape[1::-1]:
                        import cv2

                        image = cv2.resize(image, image_size, interpolation=cv2.INTER_AREA)
                    frame["image"] = image
                frame["lights"] = (np.asarray(scene.lights.states, np.uint8)
                                   if scene.lights is not None else np.zeros(0, np.uint8))
                frames.append(frame)
            if world.is_done(state):
                break
            state = world.step(neutral)  # ignored: the expert drives
        lane_change = world.lane_change_done
        instruction = world.instruction
        route = np.asarray(world.route, np.float64).reshape(-1, 2)
        heads = tuple(world.light_heads)
    finally:
        world.close()

    stride_steps = max(1, int(round(FUTURE_STEP_S / dt)))
    arrays = _assemble(frames, steps, stride_steps)
    arrays.update(_light_arrays(frames, steps, heads, route))
    stored = native = None
    if camera is not None:
        native = (camera.params.width, camera.params.height)
        stored = image_size or native
    meta = {
        "scenario": scenario, "seed": int(seed), "split": split, "clutter": clutter,
        "density": float(density), "dt_s": dt, "frame_stride": int(frame_stride),
        "image_every": int(image_every), "duration_s": float(duration_s),
        "num_frames": len(frames), "num_steps": len(steps),
        "instruction": {"text": str(instruction.text), "command": int(instruction.command),
                        "exit_number": int(getattr(instruction, "exit_number", 0) or 0),
                        "target_speed_mps": float(getattr(instruction, "target_speed_mps", -1.0))},
        "lidar": asdict(lidar_params), "lidar_frame": "ego_vehicle/lidar",
        "lidar_height_m": LIDAR_HEIGHT_M,
        "camera": ({**asdict(camera.params), "K": camera.intrinsics().ravel().tolist()}
                   if camera is not None else None),
        "image_size": list(stored) if stored else None,
        "image_K": (scaled_camera_matrix(camera.intrinsics(), native, stored).ravel().tolist()
                    if camera is not None else None),
        "future_step_s": FUTURE_STEP_S, "gt_box_columns": list(GT_BOX_COLUMNS),
        "format_version": FORMAT_VERSION,
        "adversary": dict(adversary or {}), "sensor_faults": dict(sensor_faults or {}),
        "instruction_choice": cfg.instruction,
        "lane_change": list(lane_change) if lane_change is not None else None,
    }
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    arrays["route"] = route
    arrays["static_boxes"] = static_boxes
    return arrays


def _light_arrays(frames: list[dict], steps: list[_StepRecord], heads: tuple,
                  route: np.ndarray) -> dict[str, np.ndarray]:
    """The traffic-light keys of a shard (module docstring)."""
    from tps_common.traffic_lights import heads_on_route

    n = len(heads)
    if not n:
        return {"light_id": np.zeros(0, np.int32), "light_head": np.zeros((0, 4), np.float32),
                "light_stop": np.zeros((0, 4), np.float32), "light_on_route": np.zeros(0, bool),
                "light_state": np.zeros((len(frames), 0), np.uint8),
                "light_stop_base": np.zeros((len(frames), 0, 2, 2), np.float32)}
    ends = np.stack([h.stop_line() for h in heads])                              # (L, 2, 2)
    on_route = {h.id for h, _ in heads_on_route(heads, route)}
    base = np.stack([to_base_link(ends, steps[fr["step"]].ego) for fr in frames])
    return {
        "light_id": np.array([h.id for h in heads], np.int32),
        "light_head": np.array([[*h.position, h.yaw] for h in heads], np.float32),
        "light_stop": np.array([[*h.stop_xy, h.lane_yaw, h.stop_width_m] for h in heads], np.float32),
        "light_on_route": np.array([h.id in on_route for h in heads], bool),
        "light_state": np.stack([fr["lights"] for fr in frames]).astype(np.uint8).reshape(-1, n),
        "light_stop_base": base.astype(np.float32).reshape(len(frames), n, 2, 2),
    }


def _assemble(frames: list[dict], steps: list[_StepRecord], stride: int) -> dict[str, np.ndarray]:
    """Frame arrays of a shard (futures from every simulated step)."""
    n_steps = len(steps)
    pts, pt_counts, boxes, classes, ids, nums, futs, fut_valid, gt_counts = ([] for _ in range(9))
    ego_pose, ego_speed, ego_accel, ego_fut, ego_fut_valid = [], [], [], [], []
    images, image_idx = [], []
    for i, fr in enumerate(frames):
        state, k = fr["state"], fr["step"]
        pose = steps[k].ego
        pts.append(fr["points"])
        pt_counts.append(len(fr["points"]))
        hit_ids, hit_counts = np.unique(fr["hit_id"], return_counts=True)
        hits = dict(zip(hit_ids.tolist(), hit_counts.tolist(), strict=True))
        agents = state.agents
        gt_counts.append(len(agents))
        if agents:
            center = np.array([a.center for a in agents], np.float64)
            xy = to_base_link(center[:, :2], pose)
            yaw = wrap_angle(np.array([a.yaw for a in agents]) - pose[2])
            vel = to_local(np.array([a.velocity for a in agents], np.float64), (0.0, 0.0), pose[2])
            size = np.array([a.size for a in agents], np.float64)
            boxes.append(np.column_stack([xy, center[:, 2], size, yaw, vel]))
            classes.append([a.class_id for a in agents])
            ids.append([a.id for a in agents])
            nums.append([hits.get(int(a.id), 0) for a in agents])
            fut = np.zeros((len(agents), FUTURE_COUNT, 2))
            valid = np.zeros((len(agents), FUTURE_COUNT), bool)
            for j in range(FUTURE_COUNT):
                kk = k + (j + 1) * stride
                if kk >= n_steps:
                    break
                later = steps[kk].agents
                for a_idx, a in enumerate(agents):
                    p = later.get(int(a.id))
                    if p is not None:
                        fut[a_idx, j] = to_base_link(np.array(p), pose)
                        valid[a_idx, j] = True
            futs.append(fut)
            fut_valid.append(valid)
        ego = state.ego
        ego_pose.append(pose)
        ego_speed.append(ego.speed_mps)
        ego_accel.append(ego.accel_mps2)
        ef = np.zeros((FUTURE_COUNT, 3))
        ev = np.zeros(FUTURE_COUNT, bool)
        for j in range(FUTURE_COUNT):
            kk = k + (j + 1) * stride
            if kk >= n_steps:
                break
            later = steps[kk].ego
            ef[j, :2] = to_base_link(np.array(later[:2]), pose)
            ef[j, 2] = wrap_angle(np.array(later[2] - pose[2]))
            ev[j] = True
        ego_fut.append(ef)
        ego_fut_valid.append(ev)
        if fr["image"] is not None:
            images.append(fr["image"])
            image_idx.append(i)
    g = sum(gt_counts)
    out = {
        "t_s": np.array([fr["t_s"] for fr in frames], np.float64),
        "points": (np.concatenate(pts).astype(np.float32) if pts else np.zeros((0, 4), np.float32)),
        "point_offsets": np.concatenate([[0], np.cumsum(pt_counts)]).astype(np.int64),
        "gt_offsets": np.concatenate([[0], np.cumsum(gt_counts)]).astype(np.int64),
        "gt_boxes": (np.concatenate(boxes).astype(np.float32) if boxes
                     else np.zeros((0, 9), np.float32)),
        "gt_class": np.array([c for row in classes for c in row], np.uint8).reshape(g),
        "gt_id": np.array([c for row in ids for c in row], np.int32).reshape(g),
        "gt_num_points": np.array([c for row in nums for c in row], np.int32).reshape(g),
        "gt_future": (np.concatenate(futs).astype(np.float32) if futs
                      else np.zeros((0, FUTURE_COUNT, 2), np.float32)),
        "gt_future_valid": (np.concatenate(fut_valid) if fut_valid
                            else np.zeros((0, FUTURE_COUNT), bool)),
        "ego_pose": np.array(ego_pose, np.float64).reshape(-1, 3),
        "ego_speed": np.array(ego_speed, np.float32),
        "ego_accel": np.array(ego_accel, np.float32),
        "ego_future": np.array(ego_fut, np.float32).reshape(-1, FUTURE_COUNT, 3),
        "ego_future_valid": np.array(ego_fut_valid, bool).reshape(-1, FUTURE_COUNT),
        "image": (np.stack(images) if images else np.zeros((0, 0, 0, 3), np.uint8)),
        "image_frame_idx": np.array(image_idx, np.int64),
    }
    return out


@dataclass(frozen=True)
class FrameGT:
    """Ground truth of one frame (base_link of that frame).

    Attributes:
        boxes: (n, 9) float32 x, y, z, l, w, h, yaw, vx, vy.
        classes: (n,) uint8; ids: (n,) int32; num_points: (n,) int32 lidar hits.
        future: (n, 6, 2) float32 future centres [m]; future_valid: (n, 6) bool.
    """

    boxes: np.ndarray
    classes: np.ndarray
    ids: np.ndarray
    num_points: np.ndarray
    future: np.ndarray
    future_valid: np.ndarray


class Episode:
    """A loaded shard with per-frame accessors (arrays are the shard's, see module docstring)."""

    def __init__(self, arrays: dict[str, np.ndarray], path: Path | None = None) -> None:
        self.arrays = arrays
        self.path = path
        self.meta: dict = json.loads(str(arrays["meta_json"]))
        self._image_of = {int(f): i for i, f in enumerate(arrays["image_frame_idx"])}

    def __len__(self) -> int:
        return int(self.arrays["t_s"].shape[0])

    @property
    def num_frames(self) -> int:
        return len(self)

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays")
        if arrays is not None and name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def _check(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range (episode has {len(self)} frames)")
        return i % len(self)

    def points(self, i: int) -> np.ndarray:
        """(N, 4) float32 x, y, z, intensity of frame ``i`` in the lidar frame."""
        i = self._check(i)
        off = self.arrays["point_offsets"]
        return self.arrays["points"][off[i]:off[i + 1]]

    def gt(self, i: int) -> FrameGT:
        """Ground-truth boxes and futures of frame ``i``."""
        i = self._check(i)
        a, b = self.arrays["gt_offsets"][i], self.arrays["gt_offsets"][i + 1]
        arr = self.arrays
        return FrameGT(arr["gt_boxes"][a:b], arr["gt_class"][a:b], arr["gt_id"][a:b],
                       arr["gt_num_points"][a:b], arr["gt_future"][a:b],
                       arr["gt_future_valid"][a:b])

    def image(self, i: int) -> np.ndarray | None:
        """(H, W, 3) uint8 camera image of frame ``i``, or None when not rendered there."""
        j = self._image_of.get(self._check(i))
        return None if j is None else self.arrays["image"][j]

    def lights(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids (L,), states (L,) uint8, stop lines (L, 2, 2) in base_link [m]) of frame ``i``
        (empty arrays for shards without traffic lights or older than format 2)."""
        i = self._check(i)
        arr = self.arrays
        if "light_id" not in arr:
            return np.zeros(0, np.int32), np.zeros(0, np.uint8), np.zeros((0, 2, 2), np.float32)
        return arr["light_id"], arr["light_state"][i], arr["light_stop_base"][i]

    def ego(self, i: int) -> tuple[np.ndarray, float, float, np.ndarray, np.ndarray]:
        """(pose (3,) map x, y, yaw; speed [m/s]; accel [m/s^2]; future (6, 3); valid (6,))."""
        i = self._check(i)
        arr = self.arrays
        return (arr["ego_pose"][i], float(arr["ego_speed"][i]), float(arr["ego_accel"][i]),
                arr["ego_future"][i], arr["ego_future_valid"][i])


def load_episode(path: str | os.PathLike) -> Episode:
    """Load a shard written by :func:`generate_episode` (all arrays in memory)."""
    path = Path(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Episode(arrays, path)


# -- parallel generation ----------------------------------------------------------------------
def _worker(task: dict) -> tuple[str, str]:
    try:
        path = generate_episode(**task)
        return "ok", str(path)
    except Exception as exc:  # noqa: BLE001 - reported per episode, the run continues
        return "error", f"{task['scenario']}/seed{task['seed']}: {type(exc).__name__}: {exc}"


def targeted_tasks(summary: dict, per_failure: int = 4, perturb: float = 0.1) -> list[dict]:
    """Episodes around the failures a ``tps-eval search`` found (issue 16, targeted data).

    ``summary`` is the search's ``search.json``: its ``cases`` (each with ``failure``,
    ``options`` = the suite-case options the episode ran: scenario, density, clutter, adversary,
    sensor ``faults``, detector ``node_parameters``) and ``ranges`` (the space's numeric ranges).
    Per failure, ``per_failure`` episodes: the first with the failure's own parameters, the others
    with the density and every adversary parameter moved by a normal step of ``perturb`` x its
    range (clipped to the range); scenario, clutter and faults kept. Each gets a new seed of
    ``tps_sim.splits.TARGETED`` (TRAIN seeds; the search's own seeds are never trained on).

    Returns:
        ``generate_episode`` keyword dicts (``scenario``, ``seed``, ``density``, ``clutter``,
        ``adversary``, ``sensor_faults``, ``duration_s``) plus ``source`` (the failure's arm,
        trial and seed) and ``detector_faults`` (the detector's fault parameters of the failure:
        not reproducible in sensor data; applied where a consumer builds detections).

    Raises:
        ValueError: no failure in the summary, a case without options, or more episodes than
            TARGETED has seeds.
    """
    if per_failure < 1 or not 0.0 <= perturb <= 1.0:
        raise ValueError(f"per_failure must be >= 1 and perturb in [0, 1], got {per_failure}, {perturb}")
    failures = [c for c in summary.get("cases", []) if c.get("failure")]
    if not failures:
        raise ValueError("the search found no failure: nothing to target")
    if len(failures) * per_failure > len(splits.TARGETED):
        raise ValueError(f"{len(failures)} failures x {per_failure} episodes exceed the "
                         f"{len(splits.TARGETED)} TARGETED seeds; lower --per-failure")
    ranges = summary.get("ranges", {})
    tasks = []
    for i, case in enumerate(failures):
        opts = case.get("options")
        if not opts:
            raise ValueError(f"failure {case.get('arm')}-{case.get('trial')}: no 'options' "
                             f"(a search.json from before they were written: re-run the search "
                             f"command to rewrite it)")
        for j in range(per_failure):
            rng = np.random.default_rng([int(summary.get("seed", 0)), i, j])
            density, adversary = float(opts["density"]), dict(opts.get("adversary") or {})
            if j > 0:
                def moved(value: float, key: str, rng=rng) -> float:
                    lo, hi = ranges.get(key, (value, value))
                    return float(np.clip(value + rng.normal(0.0, perturb * (hi - lo)), lo, hi))
                density = moved(density, "density")
                adversary = {k: moved(float(v), f"adversary.{k}") for k, v in sorted(adversary.items())}
            tasks.append(dict(scenario=opts["scenario"], seed=splits.TARGETED[len(tasks)],
                              density=density, clutter=opts["clutter"], adversary=adversary,
                              sensor_faults=dict(opts.get("faults") or {}),
                              duration_s=float(opts["duration_s"]),
                              source={"arm": case.get("arm"), "trial": case.get("trial"),
                                      "seed": case.get("seed"), "variant": j},
                              detector_faults=dict((opts.get("node_parameters") or {})
                                                   .get("perception", {}))))
    return tasks


def generate_dataset(scenarios: list[str], split: str, episodes: int, out_dir: str | os.PathLike,
                     *, workers: int = 2, duration_s: float = 20.0, frame_stride: int = 5,
                     image_every: int = 5, clutter: str | None = None, density: float = 1.0,
                     lidar_beams: int = 32, lidar_azimuth_steps: int = 1024,
                     overwrite: bool = False, progress: bool = True,
                     first_seed_index: int = 0,
                     image_size: tuple[int, int] | None = None) -> tuple[list[Path], list[str]]:
    """Generate ``episodes`` episodes per scenario from the first seeds of ``split`` in a spawn
    process pool (one SUMO per process). Existing shards are kept unless ``overwrite``.

    Returns:
        (paths written or kept, error messages of failed episodes).
    """
    seeds = splits.seeds(split, first_seed_index + episodes)[first_seed_index:]
    tasks = [dict(scenario=s, seed=seed, out_dir=str(out_dir), duration_s=duration_s,
                  frame_stride=frame_stride, image_every=image_every, clutter=clutter,
                  density=density, lidar_beams=lidar_beams,
                  lidar_azimuth_steps=lidar_azimuth_steps, overwrite=overwrite,
                  image_size=image_size)
             for seed in seeds for s in scenarios]
    return run_tasks(tasks, workers=workers, progress=progress, label=f"dataset {split}")


def run_tasks(tasks: list[dict], *, workers: int = 2, progress: bool = True,
              label: str = "dataset") -> tuple[list[Path], list[str]]:
    """Run :func:`generate_episode` keyword dicts in a spawn process pool (one SUMO per
    process); returns (paths written or kept, error messages of failed episodes)."""
    import multiprocessing as mp

    from tqdm import tqdm

    paths: list[Path] = []
    errors: list[str] = []
    bar = tqdm(total=len(tasks), desc=label, unit="episode", disable=not progress)
    if workers <= 1:
        results = map(_worker, tasks)
        for status, text in results:
            (paths.append(Path(text)) if status == "ok" else errors.append(text))
            bar.update(1)
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            for status, text in pool.imap_unordered(_worker, tasks):
                (paths.append(Path(text)) if status == "ok" else errors.append(text))
                bar.update(1)
    bar.close()
    return sorted(paths), errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tps-sim dataset`` options."""
    parser.add_argument("--scenarios", default="all",
                        help="'all' or a comma-separated list of scenario names")
    parser.add_argument("--episodes", type=int, default=10,
                        help="episodes per scenario (the first N seeds of the split)")
    parser.add_argument("--split", default="train", choices=sorted(splits.SPLITS),
                        help="seed split (tps_sim.splits); test seeds are held out")
    parser.add_argument("-o", "--out", default="data/sim", help="dataset root folder")
    parser.add_argument("--workers", type=int, default=2, help="processes (one SUMO each)")
    parser.add_argument("--duration", type=float, default=20.0, help="episode length [s]")
    parser.add_argument("--frame-stride", type=int, default=5,
                        help="keep every N-th 0.1 s step as a frame")
    parser.add_argument("--image-every", type=int, default=5,
                        help="camera image on every N-th frame (0 = none)")
    parser.add_argument("--image-size", default=None, metavar="WxH",
                        help="store the images downscaled to W x H pixels (area averaging; "
                             "default: the camera's 640x360)")
    parser.add_argument("--clutter", default=None, choices=CLUTTER_LEVELS,
                        help="fixed clutter level (default: cycled by seed %% 4)")
    parser.add_argument("--density", type=float, default=1.0, help="traffic density factor")
    parser.add_argument("--lidar-beams", type=int, default=32, help="lidar vertical beams")
    parser.add_argument("--lidar-azimuth-steps", type=int, default=1024,
                        help="lidar rays per revolution")
    parser.add_argument("--first-seed-index", type=int, default=0,
                        help="skip this many seeds of the split (to extend a dataset)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate existing shards")
    parser.add_argument("--from-search", default=None, metavar="RESULTS",
                        help="targeted data: episodes around the failures of a tps-eval search "
                             "(its search.json or output folder); --scenarios, --episodes, "
                             "--split, --clutter and --density then come from the failures "
                             "(TRAIN seeds of tps_sim.splits.TARGETED)")
    parser.add_argument("--per-failure", type=int, default=4,
                        help="with --from-search: episodes per failure (the first unperturbed)")
    parser.add_argument("--perturb", type=float, default=0.1,
                        help="with --from-search: std of the parameter moves, as a share of each "
                             "parameter's range in the search space")
