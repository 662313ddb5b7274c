"""Scene3D / BoxSet / RoadSurface: validation, corners, raster union of overlapping shapes."""

from __future__ import annotations

import numpy as np
import pytest
from tps_sim.sensors.scene3d import (
    MAT_CAR,
    SURFACE_ASPHALT,
    SURFACE_MARKING,
    SURFACE_OFFROAD,
    BoxSet,
    RoadSurface,
    Scene3D,
    sensor_pose,
)


def square(x0: float, y0: float, size: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size]])


def test_overlapping_drivable_polygons_are_a_union() -> None:
    """Lane shapes overlap junction shapes in SUMO networks: the overlap is road, not a hole."""
    road = RoadSurface((square(0, 0, 10), square(5, 5, 10), square(7, 7, 1)),
                       (np.array([[0.0, 20.0], [15.0, 20.0]]),))
    codes = road.surface_at(np.array([[2, 2], [7.5, 7.5], [8.5, 8.5], [14, 14], [30, 30],
                                      [7.0, 20.05], [-100, 0]]))
    assert codes.tolist() == [SURFACE_ASPHALT] * 4 + [SURFACE_OFFROAD, SURFACE_MARKING,
                                                      SURFACE_OFFROAD]


def test_raster_is_computed_once_per_road() -> None:
    road = RoadSurface((square(0, 0, 10),))
    assert road.raster is road.raster
    cell = road.raster[3]
    assert cell == pytest.approx(0.2)


def test_boxset_corners_and_concat() -> None:
    box = BoxSet(np.array([4]), np.array([[10.0, 5.0, 0.75]]), np.array([[4.0, 2.0, 1.5]]),
                 np.array([np.pi / 2]), np.array([MAT_CAR], np.int16))
    corners = box.corners()[0]
    # Heading +y: front-left corner is at +y (front) and -x (left of +y heading).
    np.testing.assert_allclose(corners[0], [9.0, 7.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(corners[6], [11.0, 3.0, 1.5], atol=1e-12)
    both = BoxSet.concat(box, BoxSet.empty(), box)
    assert len(both) == 2 and len(BoxSet.concat()) == 0
    assert both.materials.dtype == np.int16 and both.ids.dtype == np.int64


@pytest.mark.parametrize("kwargs, field", [
    ({"sizes": [[4.0, 0.0, 1.5]]}, "sizes"),
    ({"centers": [[np.nan, 0.0, 0.0]]}, "finite"),
    ({"yaws": [0.0, 1.0]}, "yaws"),
    ({"centers": [[1.0, 2.0]]}, "centers"),
])
def test_boxset_rejects_bad_arrays(kwargs: dict, field: str) -> None:
    args = {"ids": [1], "centers": [[0.0, 0.0, 0.75]], "sizes": [[4.0, 2.0, 1.5]],
            "yaws": [0.0], "materials": [MAT_CAR]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        BoxSet(**args)


def test_scene_and_sensor_pose() -> None:
    with pytest.raises(ValueError, match="ego_size"):
        Scene3D(BoxSet.empty(), BoxSet.empty(), RoadSurface(), (0, 0, 0), (4.0, -1.0, 1.5))
    with pytest.raises(ValueError, match="ego_pose"):
        Scene3D(BoxSet.empty(), BoxSet.empty(), RoadSurface(), (0, np.inf, 0))
    with pytest.raises(ValueError, match="marking_width_m"):
        RoadSurface(marking_width_m=0.0)
    origin, rot = sensor_pose((10.0, 20.0, np.pi / 2), (1.5, 0.0, 1.5))
    np.testing.assert_allclose(origin, [10.0, 21.5, 1.5], atol=1e-12)
    np.testing.assert_allclose(rot @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
