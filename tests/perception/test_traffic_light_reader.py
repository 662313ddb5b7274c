"""Classical traffic-light reader (core): the state of rendered heads from the pixels, at range,
with other camera layouts; UNKNOWN -- never a wrong colour -- when occluded, too small, out of
view or facing away; parameter checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from light_scenes import box, light_head, light_scene, render
from tps_common.traffic_lights import GREEN, RED, UNKNOWN, YELLOW
from tps_perception.traffic_light_reader import (
    REASON_NO_CALIBRATION,
    REASON_NONE,
    REASON_NOT_FACING,
    REASON_OUT_OF_RANGE,
    REASON_OUT_OF_VIEW,
    REASON_TOO_SMALL,
    REASON_UNREADABLE,
    ReaderParams,
    TrafficLightReader,
)
from tps_sim.sensors.camera import CameraParams

STATES = (RED, YELLOW, GREEN)
# The acceptance band of the reader (docs/METRICS.md "Traffic-light reader"): 10-60 m.
DISTANCES_M = (12.0, 25.0, 40.0, 59.0)


def read_one(scene, params: CameraParams | None = None, reader: TrafficLightReader | None = None):
    image, k, optical_to_map = render(scene, params)
    return (reader or TrafficLightReader()).read(image, k, optical_to_map, scene.lights.heads)


@pytest.mark.parametrize("distance", DISTANCES_M)
@pytest.mark.parametrize("state", STATES)
def test_reads_every_state_in_the_band(state, distance):
    r = read_one(light_scene([light_head(distance)], [state]))[0]
    assert (r.state, r.reason) == (state, REASON_NONE)
    assert r.confidence >= 0.75 and r.distance_m == pytest.approx(math.hypot(distance - 1.5, 4.0), rel=1e-6)


@pytest.mark.parametrize("params", [
    CameraParams(width=1280, height=720),
    CameraParams(width=800, height=450, hfov_deg=70.0),
    CameraParams(mount=(1.2, 0.3, 1.7, 0.0, math.radians(-3.0), math.radians(2.0))),   # tilted
], ids=["1280x720", "hfov70", "tilted_mount"])
@pytest.mark.parametrize("state", STATES)
def test_other_camera_layouts(params, state):
    heads = [light_head(45.0, light_id=1), light_head(30.0, lateral_m=3.5, light_id=2)]
    got = read_one(light_scene(heads, [state, state]), params)
    assert [(r.state, r.reason) for r in got] == [(state, REASON_NONE)] * 2


def test_heads_side_by_side_are_read_independently():
    heads = [light_head(35.0, 0.0, 1), light_head(35.0, 3.5, 2), light_head(35.0, -3.5, 3)]
    got = read_one(light_scene(heads, [RED, GREEN, YELLOW]))
    assert [r.state for r in got] == [RED, GREEN, YELLOW]


# Occluders 20 m from the camera (1 m deep, 3 m wide) in front of a head 40 m ahead (38.5 m from
# the camera, lamps at 5.9 / 5.5 / 5.1 m): their top edges (elevation (top - 1.5) / 19.5) hide
# every lamp, or cut through the green, the yellow or the red lamp; and poles across the head.
OCCLUDERS = {
    "whole": ((21.5, 0.0, 2.5), (1.0, 3.0, 5.0), "occluded"),
    "cuts_green": ((21.5, 0.0, 1.675), (1.0, 3.0, 3.35), "partly_occluded"),
    "cuts_yellow": ((21.5, 0.0, 1.75), (1.0, 3.0, 3.50), "partly_occluded"),
    "cuts_red": ((21.5, 0.0, 1.82), (1.0, 3.0, 3.64), "partly_occluded"),
    "pole_centre": ((21.5, 0.0, 3.6), (0.3, 0.3, 7.2), "occluded"),
    "pole_edge": ((21.5, 0.12, 3.6), (0.1, 0.1, 7.2), "visible"),
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("name", sorted(OCCLUDERS))
def test_occluded_is_unknown_never_a_wrong_colour(state, name):
    from tps_eval.lights import lamp_visibility

    centre, size, visibility = OCCLUDERS[name]
    for material in (1, 2, 3):                  # red cars, yellow-ish trucks and buses
        scene = light_scene([light_head(40.0)], [state], box(centre, size, material=material))
        image, k, optical_to_map = render(scene)
        if material == 1:   # the ground truth's (ray-cast) view of the lamp centres
            assert lamp_visibility(scene, 0, optical_to_map.translation) == visibility
        r = TrafficLightReader().read(image, k, optical_to_map, scene.lights.heads)[0]
        assert r.state in (state, UNKNOWN), (material, r)
        if r.state == UNKNOWN:
            assert r.reason == REASON_UNREADABLE
        if visibility == "occluded":
            assert r.state == UNKNOWN


def test_a_fully_hidden_head_is_unknown():
    scene = light_scene([light_head(40.0)], [GREEN], box((12.0, 0.0, 3.0), (12.0, 3.0, 6.0), material=3))
    assert (read_one(scene)[0].state, read_one(scene)[0].reason) == (UNKNOWN, REASON_UNREADABLE)


def test_geometry_reasons():
    reader = TrafficLightReader(ReaderParams(max_range_m=120.0))
    far = read_one(light_scene([light_head(100.0)], [RED]), reader=reader)[0]
    assert (far.state, far.reason) == (UNKNOWN, REASON_TOO_SMALL)
    out_of_range = read_one(light_scene([light_head(140.0)], [RED]), reader=reader)[0]
    assert out_of_range.reason == REASON_OUT_OF_RANGE
    away = read_one(light_scene([light_head(40.0, facing_yaw=0.0)], [RED]))[0]
    assert (away.state, away.reason) == (UNKNOWN, REASON_NOT_FACING)
    above = read_one(light_scene([light_head(5.0)], [RED]))[0]          # leaves the top of the image
    assert (above.state, above.reason) == (UNKNOWN, REASON_OUT_OF_VIEW)
    behind = read_one(light_scene([light_head(-20.0, facing_yaw=0.0)], [RED]))[0]
    assert behind.state == UNKNOWN and behind.reason in (REASON_OUT_OF_VIEW, REASON_NOT_FACING)
    scene = light_scene([light_head(40.0)], [RED])
    image, _, optical_to_map = render(scene)
    uncal = TrafficLightReader().read(image, None, optical_to_map, scene.lights.heads)[0]
    assert (uncal.state, uncal.reason) == (UNKNOWN, REASON_NO_CALIBRATION)


def test_a_wrong_pose_does_not_invent_a_colour():
    scene = light_scene([light_head(40.0)], [GREEN])
    image, k, optical_to_map = render(scene)
    # the ego believed 2 m to the left of where it is: the lamps project onto the sky
    from tps_common.frames import RigidTransform

    shifted = RigidTransform.from_xyz_rpy((0.0, 2.0, 0.0)) @ optical_to_map
    r = TrafficLightReader().read(image, k, shifted, scene.lights.heads)[0]
    assert r.state == UNKNOWN


def test_pixel_classes():
    reader = TrafficLightReader()
    px = np.array([[255, 30, 20], [255, 200, 0], [30, 255, 120], [28, 28, 30], [200, 50, 45],
                   [235, 200, 40], [140, 185, 235]], np.uint8)
    assert reader.classify_pixels(px).tolist() == [RED, YELLOW, GREEN, -1, -2, -2, -2]


def test_image_must_be_rgb_uint8():
    scene = light_scene([light_head(40.0)], [RED])
    _, k, optical_to_map = render(scene)
    with pytest.raises(ValueError, match="uint8 RGB"):
        TrafficLightReader().read(np.zeros((10, 10), np.uint8), k, optical_to_map, scene.lights.heads)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("max_range_m", 0.0, "max_range_m"),
    ("max_view_angle_deg", 95.0, "max_view_angle_deg"),
    ("dark_max_value", 0.95, "dark_max_value"),
    ("min_agreement", 0.5, "min_agreement"),
    ("red_hue_deg", (340.0, 400.0), "red_hue_deg"),
])
def test_bad_parameters_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        ReaderParams(**{field: value})
