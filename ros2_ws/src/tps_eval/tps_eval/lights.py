"""``tps-eval lights``: accuracy of the classical traffic-light reader against the simulator's
ground truth, per distance band (docs/METRICS.md, "Traffic-light reader")::

    tps-eval lights --seeds 9000:9010 --scenarios signalised,lights --json runs/lights.json

SUMO drives the ego (the expert) through each scenario; every ``--every``-th step the front camera
renders the scene and the reader core (``tps_perception.traffic_light_reader``, exactly the
node's code) reads the heads, with the camera pose the node would get (the ego pose of the step
composed with the camera's optical mount) and the CameraInfo matrix K. Candidates are the heads
whose stop line the ego's route drives through (what the node reads), or every head with
``--all-heads``.

Ground truth per head and frame: its state (the world's), the camera-to-housing distance, **in
view** (facing the camera within the reader's view angle, every lamp disc inside the image and in
front of the camera) and **visibility** of the three lamp centres: the segment from the camera
to each lamp centre is tested against every box of the scene (agents, statics, the light
structure except the head's own housing); a head is *visible* when no lamp is hidden,
*occluded* when every lamp is, *partly occluded* otherwise.

Scores, per band of distance: for visible in-view heads ``accuracy`` = correct / all (UNKNOWN
counts as not correct), ``wrong`` = a different colour; for occluded and partly occluded heads
the counts of correct, UNKNOWN and wrong readings (the requirement: never a wrong colour).

``--occluders`` (the occlusion test): traffic rarely hides a head on its pole, so on every read
frame each candidate head 10-60 m ahead and in view gets an occluder of its own, a box standing
on the ground in the line of sight (between 25 % and 70 % of the way from the camera to the
housing, across the line of sight, 2.5 m wide, 0.4 m deep), as tall as it must be to hide the
lowest 1, 2 or all 3 lamps (the top of the box in the gap between two lamps' rays), in a
material drawn from ``OCCLUDER_MATERIALS`` (vehicles, buildings, pedestrians, a dark housing-like
box); all draws seeded by (seed, step, head id). Visibility is still the ray test above, so a
box that happens to hide more or less than planned is scored as what it hides.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

DISTANCE_BANDS_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.0), (40.0, 50.0),
                    (50.0, 60.0), (60.0, 80.0), (80.0, 120.0), (120.0, math.inf))
ACCEPTANCE_BAND_M = (10.0, 60.0)
ACCEPTANCE_ACCURACY = 0.99
DEFAULT_SCENARIOS = ("signalised", "lights")
DEFAULT_SEEDS = "1000:1005"
DEFAULT_DURATION_S = 45.0
DEFAULT_EVERY = 2
VIS_VISIBLE, VIS_PARTIAL, VIS_OCCLUDED = "visible", "partly_occluded", "occluded"
# --occluders: box id range, materials, size and placement (module docstring).
OCCLUDER_ID_BASE = 4_000_000
OCCLUDER_WIDTH_M, OCCLUDER_DEPTH_M = 2.5, 0.4
OCCLUDER_FRACTION = (0.25, 0.70)      # along camera -> housing
OCCLUDER_MIN_AHEAD_M = 3.0            # never closer to the camera than this (the ego's bonnet)


@dataclass(frozen=True)
class Sample:
    """One head in one frame: ground truth and the reading."""

    scenario: str
    seed: int
    step: int
    head_id: int
    distance_m: float
    in_view: bool
    visibility: str
    truth: int
    read: int
    confidence: float
    reason: str


def segments_blocked(origin: np.ndarray, targets: np.ndarray, centers: np.ndarray,
                     sizes: np.ndarray, yaws: np.ndarray, end_margin: float = 1e-3) -> np.ndarray:
    """(T,) bool: the segment from ``origin`` (3,) to each target (T, 3) passes through one of
    the yaw-oriented boxes (centres (N, 3), sizes (N, 3), yaws (N,)) before reaching it."""
    targets = np.asarray(targets, np.float64).reshape(-1, 3)
    n = np.asarray(centers).reshape(-1, 3).shape[0]
    if n == 0 or targets.shape[0] == 0:
        return np.zeros(targets.shape[0], bool)
    c, s = np.cos(yaws), np.sin(yaws)
    rel_o = origin[None, :] - centers                                     # (N, 3)
    o = np.stack([c * rel_o[:, 0] + s * rel_o[:, 1], -s * rel_o[:, 0] + c * rel_o[:, 1],
                  rel_o[:, 2]], axis=1)                                    # origin in box frames
    d_map = targets - origin[None, :]                                     # (T, 3)
    d = np.stack([c[:, None] * d_map[None, :, 0] + s[:, None] * d_map[None, :, 1],
                  -s[:, None] * d_map[None, :, 0] + c[:, None] * d_map[None, :, 1],
                  np.broadcast_to(d_map[None, :, 2], (n, targets.shape[0]))], axis=2)  # (N, T, 3)
    half = 0.5 * sizes[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (-half - o[:, None, :]) * inv
        t2 = (half - o[:, None, :]) * inv
    t_near = np.nanmax(np.minimum(t1, t2), axis=2)
    t_far = np.nanmin(np.maximum(t1, t2), axis=2)
    hit = (t_near <= t_far) & (t_far > 0.0) & (t_near < 1.0 - end_margin)
    return hit.any(axis=0)


def lamp_visibility(scene, head_index: int, camera_origin: np.ndarray) -> str:
    """``visible`` / ``partly_occluded`` / ``occluded``: how many of head ``head_index``'s lamp
    centres the camera at ``camera_origin`` (3,) [m, map] sees past every box of ``scene`` (its
    own housing excluded)."""
    lights = scene.lights
    head = lights.heads[head_index]
    boxes = scene.all_boxes()
    own = len(scene.agents) + len(scene.statics) + int(lights.housing_rows[head_index])
    keep = np.ones(len(boxes), bool)
    keep[own] = False
    blocked = segments_blocked(camera_origin, head.lamp_centres(), boxes.centers[keep],
                               boxes.sizes[keep], boxes.yaws[keep])
    if not blocked.any():
        return VIS_VISIBLE
    return VIS_OCCLUDED if blocked.all() else VIS_PARTIAL


def in_view(head, camera, optical_to_map, cos_view: float, min_depth_m: float) -> bool:
    """Facing the camera within the view angle, every lamp disc inside the image, in front."""
    from tps_common.traffic_lights import LAMP_RADIUS_M

    cam = optical_to_map.translation
    to_cam = cam - head.position
    dist = float(np.linalg.norm(to_cam))
    if float(np.dot(head.facing, to_cam)) < cos_view * max(dist, 1e-9):
        return False
    opt = optical_to_map.inverse().apply(head.lamp_centres())
    if np.any(opt[:, 2] < min_depth_m):
        return False
    k = camera.intrinsics()
    u = k[0, 0] * opt[:, 0] / opt[:, 2] + k[0, 2]
    v = k[1, 1] * opt[:, 1] / opt[:, 2] + k[1, 2]
    r = k[0, 0] * LAMP_RADIUS_M / opt[:, 2]
    w, h = camera.params.width, camera.params.height
    return bool(np.all((u - r >= -0.5) & (u + r <= w - 0.5) & (v - r >= -0.5) & (v + r <= h - 0.5)))


def occluder_materials() -> tuple[int, ...]:
    """The materials an occluder is drawn from (``tps_sim.sensors.scene3d`` ``MAT_*``)."""
    from tps_sim.sensors.scene3d import (
        MAT_BUILDING,
        MAT_BUS,
        MAT_CAR,
        MAT_PEDESTRIAN,
        MAT_SIGNAL,
        MAT_TRUCK,
        MAT_WALL,
    )

    return (MAT_TRUCK, MAT_BUS, MAT_CAR, MAT_BUILDING, MAT_WALL, MAT_PEDESTRIAN, MAT_SIGNAL)


def add_occluders(scene, heads, camera_origin: np.ndarray, *, seed: int, step: int,
                  band_m: tuple[float, float] = ACCEPTANCE_BAND_M):
    """``scene`` with one ground-standing occluder box per head of ``heads`` whose housing is
    ``band_m`` from ``camera_origin`` (3,) [m, map] (module docstring, ``--occluders``); returns
    (scene, {head id: planned number of hidden lamps})."""
    from dataclasses import replace

    from tps_common.traffic_lights import LAMP_RADIUS_M
    from tps_sim.sensors.scene3d import BoxSet

    materials = occluder_materials()
    cz = float(camera_origin[2])
    rows, planned = [], {}
    for head in heads:
        to_head = head.position - camera_origin
        dist = float(np.linalg.norm(to_head))
        if not band_m[0] <= dist < band_m[1]:
            continue
        rng = np.random.default_rng([int(seed), int(step), int(head.id), 12])
        f = max(float(rng.uniform(*OCCLUDER_FRACTION)), OCCLUDER_MIN_AHEAD_M / dist)
        hidden = int(rng.integers(1, 4))            # lowest 1 (green), 2 (+ yellow) or all 3
        # Top of the box: where the rays from the camera cross the box's near face (a ray
        # that passes it there rises over the flat top), midway between the ray to the top edge
        # of the highest hidden lamp and the ray to the bottom edge of the lowest visible one.
        u = to_head[:2] / max(float(np.linalg.norm(to_head[:2])), 1e-9)
        near_face = f * float(np.dot(u, to_head[:2])) - 0.5 * OCCLUDER_DEPTH_M
        lamps = head.lamp_centres()[::-1]                   # green, yellow, red (rising)
        t = near_face / ((lamps[:, :2] - camera_origin[:2]) @ u)
        below = cz + t[hidden - 1] * (lamps[hidden - 1, 2] + LAMP_RADIUS_M - cz)
        above = (cz + t[hidden] * (lamps[hidden, 2] - LAMP_RADIUS_M - cz) if hidden < 3
                 else below + 2.0 * f * LAMP_RADIUS_M)
        top = 0.5 * (below + above)
        xy = camera_origin[:2] + f * to_head[:2]
        yaw = math.atan2(to_head[1], to_head[0])
        rows.append((OCCLUDER_ID_BASE + len(rows), (xy[0], xy[1], 0.5 * top),
                     (OCCLUDER_DEPTH_M, OCCLUDER_WIDTH_M, top), yaw,
                     materials[int(rng.integers(len(materials)))]))
        planned[head.id] = hidden
    if not rows:
        return scene, planned
    ids, centers, sizes, yaws, mats = zip(*rows, strict=True)
    occ = BoxSet(np.array(ids), np.array(centers), np.array(sizes), np.array(yaws), np.array(mats))
    return replace(scene, statics=BoxSet.concat(scene.statics, occ)), planned


def run_episode(scenario: str, seed: int, *, duration_s: float, every: int, all_heads: bool,
                clutter: str | None, density: float, reader_params=None,
                camera_params=None, save_frames: dict | None = None,
                occluders: bool = False) -> list[Sample]:
    """Drive one expert episode and score the reader on every ``every``-th step.

    ``save_frames``: {step: path} -- PNGs of those steps' camera images (for reports).
    ``occluders``: hide every candidate head 10-60 m ahead behind a box (module docstring)."""
    from PIL import Image
    from tps_common.traffic_lights import heads_on_route
    from tps_perception.traffic_light_reader import REASON_NAMES, TrafficLightReader
    from tps_sim.dataset import clutter_for_seed
    from tps_sim.sensors.camera import CameraModel
    from tps_sim.sensors.rig import SensorRig
    from tps_sim.world import EgoControl, SimWorld, WorldConfig

    reader = TrafficLightReader(reader_params)
    camera = CameraModel(camera_params)
    rig = SensorRig(camera_mount=camera.params.mount)
    cfg = WorldConfig(scenario=scenario, seed=seed, density=density,
                      clutter=clutter or clutter_for_seed(seed), ego_driver="expert",
                      duration_s=duration_s)
    world = SimWorld(cfg)
    heads = list(world.light_heads)
    if not all_heads:
        heads = [h for h, _ in heads_on_route(heads, world.route)]
    index = {h.id: i for i, h in enumerate(world.light_heads)}
    cos_view = math.cos(math.radians(reader.params.max_view_angle_deg))
    out: list[Sample] = []
    try:
        state = world.reset()
        while True:
            if state.step % every == 0 and heads:
                scene = world.scene3d(state)
                optical_to_map = rig.vehicle_transform(scene.ego_pose) @ camera.optical_mount
                if occluders:
                    scene, _ = add_occluders(scene, heads, optical_to_map.translation, seed=seed,
                                             step=int(state.step))
                image = camera.render(scene)
                if save_frames and state.step in save_frames:
                    Image.fromarray(image).save(save_frames[state.step])
                readings = reader.read(image, camera.intrinsics(), optical_to_map, heads)
                for head, rd in zip(heads, readings, strict=True):
                    k = index[head.id]
                    view = in_view(head, camera, optical_to_map, cos_view, reader.params.min_depth_m)
                    vis = lamp_visibility(scene, k, optical_to_map.translation) if view else ""
                    out.append(Sample(scenario, seed, int(state.step), head.id, rd.distance_m,
                                      view, vis, int(scene.lights.states[k]), int(rd.state),
                                      float(rd.confidence), REASON_NAMES[rd.reason]))
            if world.is_done(state):
                break
            state = world.step(EgoControl())
    finally:
        world.close()
    return out


def band_table(samples: list[Sample]) -> list[dict]:
    """Rows per distance band (module docstring)."""
    from tps_common.traffic_lights import UNKNOWN

    rows = []
    for lo, hi in DISTANCE_BANDS_M:
        band = [s for s in samples if lo <= s.distance_m < hi and s.in_view]
        row: dict = {"band_m": f"{lo:g}-{hi:g}", "lo_m": lo, "hi_m": hi}
        for vis in (VIS_VISIBLE, VIS_PARTIAL, VIS_OCCLUDED):
            group = [s for s in band if s.visibility == vis]
            correct = sum(1 for s in group if s.read == s.truth)
            unknown = sum(1 for s in group if s.read == UNKNOWN)
            wrong = len(group) - correct - unknown
            row[vis] = {"n": len(group), "correct": correct, "unknown": unknown, "wrong": wrong,
                        "accuracy": (correct / len(group)) if group else None}
        rows.append(row)
    return rows


def summarise(samples: list[Sample]) -> dict:
    """Acceptance figures: accuracy of visible in-view heads within ACCEPTANCE_BAND_M, wrong
    colours anywhere (visible or occluded), per-state confusion within the band."""
    from tps_common.traffic_lights import UNKNOWN, state_name

    lo, hi = ACCEPTANCE_BAND_M
    acc_set = [s for s in samples if s.in_view and s.visibility == VIS_VISIBLE
               and lo <= s.distance_m < hi]
    correct = sum(1 for s in acc_set if s.read == s.truth)
    wrong_any = [s for s in samples if s.read != UNKNOWN and s.read != s.truth]
    occl = [s for s in samples if s.in_view and s.visibility != VIS_VISIBLE]
    confusion: dict = {}
    for s in acc_set:
        key = f"{state_name(s.truth)}->{state_name(s.read)}"
        confusion[key] = confusion.get(key, 0) + 1
    accuracy = correct / len(acc_set) if acc_set else None
    return {
        "acceptance_band_m": list(ACCEPTANCE_BAND_M),
        "samples_in_band_visible": len(acc_set),
        "accuracy_in_band_visible": accuracy,
        "accuracy_target": ACCEPTANCE_ACCURACY,
        "accuracy_met": accuracy is not None and accuracy >= ACCEPTANCE_ACCURACY,
        "wrong_colour_total": len(wrong_any),
        "occluded_or_partly_samples": len(occl),
        "occluded_or_partly_wrong": sum(1 for s in occl if s.read != UNKNOWN and s.read != s.truth),
        "occluded_unknown": sum(1 for s in occl if s.read == UNKNOWN),
        "confusion_in_band": dict(sorted(confusion.items())),
        "reasons": {r: sum(1 for s in samples if s.reason == r)
                    for r in sorted({s.reason for s in samples})},
    }


def markdown(result: dict) -> str:
    """The report as Markdown."""
    s = result["summary"]
    acc = s["accuracy_in_band_visible"]
    cam = result.get("camera") or {}
    lines = [f"# Traffic-light reader: {', '.join(result['scenarios'])}, seeds {result['seeds']} "
             f"({result['split']}, held out: {result['held_out']})", "",
             f"Camera: {cam.get('width')} x {cam.get('height')} px, hfov {cam.get('hfov_deg')} deg, "
             f"mount {cam.get('mount')} (x, y, z m, roll, pitch, yaw rad).", "",
             "Definitions: docs/METRICS.md \"Traffic-light reader\". Candidates: "
             + ("every head" if result["all_heads"] else "the heads on the ego's route") + ".",
             *(["", "Occluders: every candidate head 10-60 m ahead has a box in its line of sight "
                "hiding its lowest 1, 2 or 3 lamps (tps_eval.lights, `--occluders`)."]
               if result.get("occluders") else []), "",
             f"- accuracy, visible in-view heads {s['acceptance_band_m'][0]:g}-"
             f"{s['acceptance_band_m'][1]:g} m: **{'-' if acc is None else f'{acc:.2%}'}** "
             f"(n = {s['samples_in_band_visible']}, target {s['accuracy_target']:.0%})",
             f"- wrong colours (any distance, any visibility): **{s['wrong_colour_total']}**",
             f"- occluded or partly occluded in-view samples: {s['occluded_or_partly_samples']} "
             f"(UNKNOWN {s['occluded_unknown']}, wrong {s['occluded_or_partly_wrong']})",
             f"- confusion in band (truth->read): {s['confusion_in_band']}",
             f"- reader verdicts: {s['reasons']}", "",
             "| band [m] | visible n | accuracy | unknown | wrong | partly occl. n | unknown | wrong "
             "| occluded n | unknown | wrong |", "|" + "---|" * 11]
    for r in result["bands"]:
        v, p, o = r[VIS_VISIBLE], r[VIS_PARTIAL], r[VIS_OCCLUDED]
        accs = "-" if v["accuracy"] is None else f"{v['accuracy']:.2%}"
        lines.append(f"| {r['band_m']} | {v['n']} | {accs} | {v['unknown']} | {v['wrong']} | "
                     f"{p['n']} | {p['unknown']} | {p['wrong']} | {o['n']} | {o['unknown']} | "
                     f"{o['wrong']} |")
    lines += ["", f"frames: {result['frames']}, samples: {result['samples']}, wall "
              f"{result['wall_s']:.0f} s"]
    return "\n".join(lines) + "\n"


def evaluate(scenarios, seed_set, *, duration_s: float, every: int, all_heads: bool,
             clutter: str | None, density: float, progress: bool = True,
             camera_params=None, occluders: bool = False) -> dict:
    """Run every (scenario, seed) and build the result dict (``--json`` content)."""
    from dataclasses import asdict

    from tps_sim.sensors.camera import CameraParams
    from tqdm import tqdm

    camera_params = camera_params or CameraParams()
    t0 = time.monotonic()
    samples: list[Sample] = []
    jobs = [(sc, seed) for sc in scenarios for seed in seed_set.seeds]
    for sc, seed in tqdm(jobs, desc="lights", unit="episode", disable=not progress):
        samples += run_episode(sc, seed, duration_s=duration_s, every=every, all_heads=all_heads,
                               clutter=clutter, density=density, camera_params=camera_params,
                               occluders=occluders)
    return {"scenarios": list(scenarios), "camera": asdict(camera_params), "occluders": occluders,
            "seeds": seed_set.spec, "split": seed_set.split,
            "held_out": seed_set.held_out, "seed_set": seed_set.to_dict(),
            "duration_s": duration_s, "every": every, "all_heads": all_heads,
            "frames": len({(s.scenario, s.seed, s.step) for s in samples}),
            "samples": len(samples), "summary": summarise(samples), "bands": band_table(samples),
            "wall_s": time.monotonic() - t0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tps-eval lights`` options."""
    from tps_eval import seeds as S

    S.add_arguments(parser, default=DEFAULT_SEEDS)
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help="comma-separated scenarios with traffic lights")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S,
                        help="episode length [s]")
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY,
                        help="read every N-th 0.1 s step")
    parser.add_argument("--all-heads", action="store_true",
                        help="read every head, not only those on the ego's route")
    parser.add_argument("--clutter", default=None, help="fixed clutter (default: by seed %% 4)")
    parser.add_argument("--density", type=float, default=1.0, help="traffic density factor")
    parser.add_argument("--camera-width", type=int, default=None, help="image width [px] (default 640)")
    parser.add_argument("--camera-height", type=int, default=None, help="image height [px] (default 360)")
    parser.add_argument("--camera-hfov", type=float, default=None, help="horizontal field of view [deg] (default 90)")
    parser.add_argument("--camera-mount", type=float, nargs=6, default=None,
                        metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
                        help="camera body pose in base_link [m, rad] (default 1.5 0 1.5 0 0 0)")
    parser.add_argument("--occluders", action="store_true",
                        help="the occlusion test: a box in the line of sight of every candidate "
                             "head 10-60 m ahead, hiding 1, 2 or 3 lamps")
    parser.add_argument("--json", default=None, help="write the result here (Markdown next to it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, seed_set) -> int:
    """The verb: prints the Markdown report; exit 1 when the accuracy target is missed or any
    colour was read wrong (with ``--occluders``: when any colour was read wrong or no head was
    occluded at all)."""
    from pathlib import Path

    from tps_eval import seeds as S

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.every < 1:
        raise ValueError("--every must be >= 1")
    S.warn_if_not_held_out(seed_set, "the light reader is scored")
    from tps_sim.sensors.camera import CameraParams

    camera = {k: v for k, v in (("width", args.camera_width), ("height", args.camera_height),
                                ("hfov_deg", args.camera_hfov),
                                ("mount", tuple(args.camera_mount) if args.camera_mount else None))
              if v is not None}
    result = evaluate(scenarios, seed_set, duration_s=args.duration, every=args.every,
                      all_heads=args.all_heads, clutter=args.clutter, density=args.density,
                      progress=not args.quiet, camera_params=CameraParams(**camera),
                      occluders=args.occluders)
    text = markdown(result)
    print(text)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=float))
        path.with_suffix(".md").write_text(text)
        print(f"json: {path}", file=sys.stderr)
    s = result["summary"]
    if args.occluders:
        return 0 if s["occluded_or_partly_samples"] > 0 and s["wrong_colour_total"] == 0 else 1
    return 0 if s["accuracy_met"] and s["wrong_colour_total"] == 0 else 1
