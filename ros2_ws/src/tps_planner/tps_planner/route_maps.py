"""The fallback node's route / lane-map builds, off its executor thread (no rclpy).

Laying a lane map over a route (:func:`tps_planner.fallback.build_route_map`) takes 30-70 ms on an
idle core and several times that on the loaded 2-core vehicle computer, and rclpy's deserialisation
of the route message (1600 PoseStamped objects) another ~70 ms. Done in the route and lane-map
callbacks it held the node's only executor thread: when a new drive's route and map came
in, the lidar clouds that arrived meanwhile replaced each other in the depth-1 sensor queue, and the
first 1-2 frames of each drive were never answered (benchmarks/bench_e2e.py: 6 of 1571 frames).

:class:`RouteMapWorker` takes the messages as they arrive (:meth:`RouteMapWorker.put_route`,
:meth:`RouteMapWorker.put_lane_map`: cheap, latest wins), converts and builds on its own thread and
hands finished :class:`MapUpdate` s back (the node subscribes to the route raw: its CDR bytes are
decoded here, :func:`tps_planner.conversions.path_cdr_to_xy`) (:meth:`RouteMapWorker.take`), calling ``notify`` (the
node's guard condition) so that the executor installs them between two cycles. A route and its lane
map sent together are built once: the worker takes whatever has arrived before laying the lanes.
Every request has a sequence number; the node compares the last one requested with the last one
installed to know that a build is pending. Bad input is reported in the update (aspect, text), never
raised: the thread outlives any message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from tps_planner import conversions as conv
from tps_planner.fallback import FallbackParams, Route, RouteMap, build_route_map, make_route
from tps_planner.lane_map import LaneMap

MAP_FRAMES = ("map", "")          # frames a route / lane map may be given in


@dataclass(frozen=True)
class MapUpdate:
    """One finished build, covering every request up to ``seq``."""

    seq: int
    built: RouteMap | None            # None: nothing to install (no usable route yet)
    new_route: bool                   # the route itself changed (not only the lanes)
    route_xy: np.ndarray | None       # the new route's polyline as received, map frame (N, 2) [m]
    route_error: str | None           # None: no route message in this update; '' a good one
    errors: tuple[tuple[str, str], ...] = ()   # (input aspect, text): ERROR diagnostics to publish
    infos: tuple[str, ...] = ()       # log lines (what was installed)
    build_ms: float = 0.0             # conversion + build wall time


class RouteMapWorker:
    """Builds the fallback's route maps on a daemon thread (module docstring)."""

    def __init__(self, params: FallbackParams, notify: Callable[[], None] | None = None) -> None:
        self.params = params
        self._notify = notify
        self._cond = threading.Condition()
        self._route_msg = None
        self._map_msg = None
        self._requested = 0
        self._taken = 0               # the last request the thread has taken
        self._done: list[MapUpdate] = []
        self._stop = False
        # the newest accepted inputs (what the next build lays over each other)
        self._route: Route | None = None
        self._tree = None
        self._lane_map: LaneMap | None = None
        self._last_xy: np.ndarray | None = None   # the accepted route's polyline as received
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="fallback-route-map", daemon=True)
        self._thread.start()

    @property
    def requested(self) -> int:
        """Sequence number of the last request (0: none yet)."""
        with self._cond:
            return self._requested

    def put_route(self, msg) -> int:
        """Queue a nav_msgs/Path or its CDR bytes (replaces one not taken yet); returns its sequence
        number."""
        with self._cond:
            self._requested += 1
            self._route_msg = msg
            self._cond.notify_all()
            return self._requested

    def put_lane_map(self, msg) -> int:
        """Queue a tps_msgs/LaneMap (replaces one not taken yet); returns its sequence number."""
        with self._cond:
            self._requested += 1
            self._map_msg = msg
            self._cond.notify_all()
            return self._requested

    def take(self) -> list[MapUpdate]:
        """The finished updates, oldest first (each install is cheap; install them all in order)."""
        with self._cond:
            done, self._done = self._done, []
            return done

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every request so far is built (tests, tools); False at the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._route_msg is not None or self._map_msg is not None or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        """Stop the thread (a build under way finishes first)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    # ------------------------------------------------------------------------------- thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and self._route_msg is None and self._map_msg is None:
                    self._cond.wait()
                if self._stop:
                    return
                self._busy = True
            try:
                update = self._build()
            except Exception as exc:  # noqa: BLE001 - a message must never end the thread
                update = MapUpdate(seq=self._taken, built=None, new_route=False, route_xy=None, route_error=None,
                                   errors=(("route", f"route map build failed ({type(exc).__name__}: {exc}): "
                                                     "the last one stays in use"),))
            with self._cond:
                self._done.append(update)
                self._busy = False
                self._cond.notify_all()
            if self._notify is not None:
                self._notify()

    def _build(self) -> MapUpdate:
        t0 = time.perf_counter()
        errors: list[tuple[str, str]] = []
        infos: list[str] = []
        new_route, changed = False, False
        route_xy, route_error = None, None
        seq = 0
        while True:
            # Take whatever has arrived: a lane map sent right after its route is taken before the
            # lanes are laid (one build, not one with the previous drive's map first).
            with self._cond:
                route_msg, self._route_msg = self._route_msg, None
                map_msg, self._map_msg = self._map_msg, None
                if route_msg is None and map_msg is None:
                    break
                seq = self._taken = self._requested
            if route_msg is not None:
                route_error = self._take_route(route_msg)
                if not route_error:
                    route_xy = self._last_xy
                    new_route = changed = True
                    infos.append(f"route: {len(route_xy)} poses, {self._route.s[-1]:.0f} m")
                else:
                    errors.append(("route", route_error))
            if map_msg is not None:
                map_error = self._take_lane_map(map_msg)
                if map_error:
                    errors.append(("lane_map", map_error))
                else:
                    changed = True
                    infos.append(f"lane map: {len(map_msg.lanes)} lanes, {len(map_msg.crosswalks)} crosswalks")
        built = None
        if changed and self._route is not None:
            built = build_route_map(self._route, self._lane_map, self.params, tree=self._tree)
            if built.lanes is not None:
                infos.append(f"{len(built.lanes.strips)} lanes along the route")
        ms = (time.perf_counter() - t0) * 1e3
        if built is not None:
            infos.append(f"route map built in {ms:.0f} ms")
        return MapUpdate(seq=seq, built=built, new_route=new_route, route_xy=route_xy, route_error=route_error,
                         errors=tuple(errors), infos=tuple(infos), build_ms=ms)

    def _take_route(self, msg) -> str:
        """Accept a route (a nav_msgs/Path, or its CDR bytes from a raw subscription); returns '' or
        why it was refused (the previous route stays)."""
        try:
            if isinstance(msg, (bytes, bytearray, memoryview)):
                frame_id, xy = conv.path_cdr_to_xy(msg)
            else:
                frame_id, xy = msg.header.frame_id, conv.path_to_xy(msg)
        except ValueError as exc:
            return f"unusable route: {exc}"
        if frame_id not in MAP_FRAMES:
            return f"route frame '{frame_id}' is not 'map'"
        try:
            route = make_route(xy, self.params)
        except ValueError as exc:
            return f"unusable route: {exc}"
        self._route, self._tree, self._last_xy = route, cKDTree(route.xy), xy
        return ""

    def _take_lane_map(self, msg) -> str:
        """Accept a lane-map message; returns '' or why it was refused (the previous map stays)."""
        if msg.header.frame_id not in MAP_FRAMES:
            return f"lane map frame '{msg.header.frame_id}' is not 'map': ignored"
        try:
            self._lane_map = conv.lane_map_from_msg(msg)
        except ValueError as exc:
            return f"unusable lane map: {exc}"
        return ""
