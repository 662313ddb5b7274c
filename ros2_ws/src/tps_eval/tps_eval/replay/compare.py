"""Compare recorded outputs field by field (no ROS): the regression replays' verdict and the
determinism check.

Messages are flattened into ``path -> value`` (``agents.3.center.x``; ``header.stamp.sec``), so a
comparison rule is a glob pattern over paths (``fnmatch``: ``agents.*.center.*``):

* ``ignore``: paths never compared (e.g. ``processing_time_ms``, wall-clock values);
* ``tolerances``: the absolute tolerance of matching numeric paths (first matching pattern wins);
  other floats use ``default_tolerance``; integers, strings and booleans must be equal;
* per topic, both runs must have the same number of messages, paired in order, and each pair the
  same set of paths (a list that grew or shrank is a difference, named by its length path).

A :class:`Difference` names the topic, the message's index and stamp, the path, both values and
the tolerance, so a failure says exactly what moved.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

MAX_REPORTED = 20


@dataclass(frozen=True)
class CompareSpec:
    """What to compare and how strictly (module docstring)."""

    topics: tuple[str, ...]
    ignore: tuple[str, ...] = ()
    tolerances: dict = field(default_factory=dict)
    default_tolerance: float = 0.0


@dataclass(frozen=True)
class Difference:
    """One field that differs beyond its tolerance."""

    topic: str
    index: int
    stamp_s: float | None
    path: str
    reference: Any
    value: Any
    tolerance: float | None

    def __str__(self) -> str:
        tol = f" (tolerance {self.tolerance:g})" if self.tolerance is not None else ""
        at = f" stamp {self.stamp_s:.3f} s" if self.stamp_s is not None else ""
        return f"{self.topic}[{self.index}]{at}: {self.path}: reference {self.reference!r}, now {self.value!r}{tol}"


@dataclass
class Comparison:
    """The verdict: ``ok`` when nothing differs; ``differences`` (at most ``MAX_REPORTED`` kept),
    ``count`` of all, messages compared per topic."""

    differences: list = field(default_factory=list)
    count: int = 0
    compared: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.count == 0

    def add(self, diff: Difference) -> None:
        self.count += 1
        if len(self.differences) < MAX_REPORTED:
            self.differences.append(diff)

    def summary(self) -> str:
        if self.ok:
            return f"identical within tolerance ({', '.join(f'{t}: {n}' for t, n in self.compared.items())})"
        return f"{self.count} difference(s):\n" + "\n".join(f"  {d}" for d in self.differences)


def flatten(value: Any, prefix: str = "", out: dict | None = None) -> dict[str, Any]:
    """``path -> leaf value`` of a decoded message (rosbags or rclpy dataclass-like objects, lists,
    numpy arrays); a sequence also contributes ``<path>.len``."""
    out = {} if out is None else out
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            if f.name.startswith("__"):
                continue
            flatten(getattr(value, f.name), f"{prefix}{f.name}.", out)
        return out
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        out[f"{prefix}len"] = len(value)
        for i, v in enumerate(value):
            flatten(v, f"{prefix}{i}.", out)
        return out
    if isinstance(value, (bytes, bytearray)):
        out[prefix[:-1]] = bytes(value)
        return out
    out[prefix[:-1]] = value.item() if isinstance(value, np.generic) else value
    return out


def _tolerance(path: str, spec: CompareSpec) -> float:
    for pattern, tol in spec.tolerances.items():
        if fnmatchcase(path, pattern):
            return float(tol)
    return float(spec.default_tolerance)


def _ignored(path: str, spec: CompareSpec) -> bool:
    return any(fnmatchcase(path, p) or fnmatchcase(path, f"*.{p}") for p in spec.ignore)


def _stamp(flat: dict) -> float | None:
    if "header.stamp.sec" in flat:
        return flat["header.stamp.sec"] + flat.get("header.stamp.nanosec", 0) * 1e-9
    return None


def compare_messages(topic: str, reference: list, new: list, spec: CompareSpec, result: Comparison) -> None:
    """Compare two lists of decoded messages of one topic into ``result``."""
    if len(reference) != len(new):
        result.add(Difference(topic, -1, None, "message count", len(reference), len(new), None))
    result.compared[topic] = min(len(reference), len(new))
    for i, (a, b) in enumerate(zip(reference, new, strict=False)):
        fa, fb = flatten(a), flatten(b)
        stamp = _stamp(fa)
        for path in sorted(set(fa) | set(fb)):
            if _ignored(path, spec):
                continue
            if path not in fa or path not in fb:
                result.add(Difference(topic, i, stamp, path, fa.get(path, "<absent>"), fb.get(path, "<absent>"),
                                      None))
                continue
            va, vb = fa[path], fb[path]
            if isinstance(va, float) or isinstance(vb, float):
                tol = _tolerance(path, spec)
                fa_, fb_ = float(va), float(vb)
                same = (math.isnan(fa_) and math.isnan(fb_)) or abs(fa_ - fb_) <= tol
                if not same:
                    result.add(Difference(topic, i, stamp, path, va, vb, tol))
            elif va != vb:
                result.add(Difference(topic, i, stamp, path, va, vb, None))


def load_topics(path: str | Path, topics: tuple[str, ...]) -> dict[str, list]:
    """topic -> decoded messages (log-time order) of a bag."""
    from tps_eval.replay.bagio import read_messages

    out: dict[str, list] = {t: [] for t in topics}
    for topic, _, _, msg in read_messages(path, set(topics)):
        out[topic].append(msg)
    return out


def compare_bags(reference: str | Path, new: str | Path, spec: CompareSpec) -> Comparison:
    """Compare the ``spec.topics`` of two bags (module docstring)."""
    ref, cur = load_topics(reference, spec.topics), load_topics(new, spec.topics)
    result = Comparison()
    for topic in spec.topics:
        compare_messages(topic, ref[topic], cur[topic], spec, result)
    return result
