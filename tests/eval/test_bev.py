"""BEV plot: PNG per frame and GIF per episode from synthetic data (no simulator needed)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from tps_eval import bev
from tps_eval.metrics import ObjectFrame

FRAMES = 6
LANE_WIDTH_M = 3.5


def synthetic_scene() -> tuple[bev.BevScene, list[bev.BevFrame]]:
    road = [np.array([[-20, -LANE_WIDTH_M], [120, -LANE_WIDTH_M], [120, LANE_WIDTH_M],
                      [-20, LANE_WIDTH_M]], float)]
    markings = [np.array([[-20, 0.0], [120, 0.0]])]
    statics = ObjectFrame([900], [[60.0, -1.5]], [0.3], [0.8], [0.8], [[0, 0]], [15])
    scene = bev.BevScene(road, markings, route=np.array([[0.0, -1.75], [100.0, -1.75]]),
                         statics=statics, title="synthetic seed 0")
    frames = []
    for k in range(FRAMES):
        x = 5.0 * k
        agents = ObjectFrame([1, 2], [[x + 15, 1.75], [x - 12, -1.75]], [0.0, 0.0], [4.5, 12.0],
                             [1.8, 2.5], [[8, 0], [10, 0]], [1, 2])
        frames.append(bev.BevFrame((x, -1.75, 0.0), agents,
                                   path=np.stack([np.linspace(0, x, k + 1), np.full(k + 1, -1.75)], 1),
                                   lidar_xy=np.random.default_rng(k).uniform(-20, 20, (500, 2)) + [x, 0],
                                   collision_xy=np.array([[x + 2.0, -1.75]]) if k == FRAMES - 1
                                   else np.zeros((0, 2)),
                                   time_s=0.5 * k, label="source: fallback"))
    return scene, frames


def test_png_frame_shows_road_ego_and_collision(tmp_path):
    scene, frames = synthetic_scene()
    path = bev.render_frame_png(scene, frames[-1], tmp_path / "f.png")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape[0] > 100 and img.shape[1] > 100

    def has_colour(hex_colour: str, tol: int = 10) -> bool:
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return bool((np.abs(img - rgb).max(axis=-1) <= tol).any())

    assert has_colour(bev.ROAD_COLOUR)
    assert has_colour(bev.EGO_COLOUR)
    assert has_colour(bev.COLLISION_COLOUR)
    assert has_colour(bev.CLASS_COLOURS[2])  # the truck


def test_gif_has_one_frame_per_step(tmp_path):
    scene, frames = synthetic_scene()
    path = bev.render_episode_gif(scene, frames, tmp_path / "ep.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == FRAMES
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"))
        gif.seek(FRAMES - 1)
        last = np.asarray(gif.convert("RGB"))
    assert not np.array_equal(first, last)  # the scene moves


def test_traffic_lights_drawn_in_their_state_colour(tmp_path):
    scene, frames = synthetic_scene()
    lines = np.array([[[40.0, -3.5], [40.0, 0.0]], [[40.0, 0.0], [40.0, 3.5]]])
    lit = bev.BevScene(scene.drivable_polygons, scene.marking_polylines, scene.route, scene.statics,
                       title="lights", light_stop_lines=lines,
                       light_heads_xy=np.array([[70.0, -1.75], [70.0, 1.75]]))

    def colours_in(states) -> set:
        frame = bev.BevFrame(frames[3].ego_pose, frames[3].agents, light_states=np.array(states))
        img = np.asarray(Image.open(bev.render_frame_png(lit, frame, tmp_path / "l.png")).convert("RGB"))
        found = set()
        for state, hex_colour in bev.LIGHT_COLOURS.items():
            rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
            if (np.abs(img.astype(int) - rgb).max(axis=-1) <= 10).any():
                found.add(state)
        return found

    assert {0, 2} <= colours_in([0, 2]) and 1 not in colours_in([0, 2])
    assert 1 in colours_in([1, 1])
