"""Seeds for every ``tps-eval`` verb: one syntax, one split label, one held-out rule.

Syntax (``--seeds``; suite files take the same strings)::

    A:B        the half-open range [A, B): 9000:9005 = 9000, 9001, 9002, 9003, 9004
    A          one seed
    A,B,C      a list
    --split N  every seed of split N (train, val, test; ``tps_sim.splits``)

A seed fully determines an episode, so the split of the seeds is the split of the data. Splits
(``tps_sim.splits``): TRAIN 0-999, VAL 1000-1099, TEST 9000-9099. A non-negative seed in none of
them is accepted and labelled ``unassigned``: nothing is ever trained, tuned or calibrated on it,
so it counts as held out like TEST. A set of seeds is **held out** only when none of them is a
TRAIN or VAL seed; every report and JSON carries the label (:meth:`SeedSet.to_dict`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from tps_sim import splits

UNASSIGNED = "unassigned"      # label of a seed outside every split (held out)
NOT_HELD_OUT = ("train", "val")  # splits whose seeds are never reported as held out
SEED_SYNTAX = ("A:B = the half-open range [A, B) (9000:9005 = five seeds), A = one seed, "
               "A,B,C = a list")
SPLITS_TEXT = (f"splits: train {splits.TRAIN.start}-{splits.TRAIN.stop - 1}, val "
               f"{splits.VAL.start}-{splits.VAL.stop - 1}, test {splits.TEST.start}-"
               f"{splits.TEST.stop - 1}; a seed outside them is 'unassigned' and, like test, held "
               "out; train and val seeds never are")


class SeedError(ValueError):
    """Seeds that cannot be parsed; the message says what is wrong."""


def parse_seeds(spec: Any) -> list[int]:
    """Seeds from ``"A:B"`` (half-open [A, B)), ``"A"``, ``"A,B,C"``, an int, a list of ints or
    ``{"split": NAME, "count": N}`` (the first N seeds of the split; all without ``count``).

    Raises:
        SeedError: naming what is wrong (syntax, empty range, negative, duplicate, unknown
            split).
    """
    if isinstance(spec, dict):
        try:
            return split_seeds(spec["split"], spec.get("count"))
        except KeyError:
            raise SeedError(f"{spec!r} needs a 'split' (and optionally a 'count')") from None
    if isinstance(spec, int) and not isinstance(spec, bool):
        out = [spec]
    elif isinstance(spec, (list, tuple)):
        out = list(spec)
    elif isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                a, b = text.split(":", 1)
                lo, hi = int(a), int(b)
                if hi <= lo:
                    raise SeedError(f"range {text!r} is empty (A:B means A <= seed < B)")
                out = list(range(lo, hi))
            else:
                out = [int(s) for s in text.split(",") if s.strip()]
        except ValueError as exc:
            if isinstance(exc, SeedError):
                raise
            raise SeedError(f"cannot parse {text!r}; use {SEED_SYNTAX}") from None
    else:
        raise SeedError(f"cannot parse {spec!r}; use {SEED_SYNTAX}")
    if not out:
        raise SeedError("no seeds given")
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SeedError(f"{s!r} is not a non-negative integer")
    if len(set(out)) != len(out):
        raise SeedError(f"duplicates in {spec!r}")
    return out


def split_seeds(name: str, count: int | None = None) -> list[int]:
    """The first ``count`` seeds of split ``name`` (all of them when None).

    Raises:
        SeedError: unknown split, or more seeds asked for than it has.
    """
    try:
        return splits.seeds(name, count)
    except ValueError as exc:
        raise SeedError(str(exc)) from None


def split_label(seed: int) -> str:
    """``train``, ``val``, ``test`` or ``unassigned`` (in no split)."""
    try:
        return splits.split_of(seed)
    except ValueError:
        return UNASSIGNED


def is_held_out(seed: int) -> bool:
    """True unless the seed is a TRAIN or VAL seed."""
    return split_label(seed) not in NOT_HELD_OUT


@dataclass(frozen=True)
class SeedSet:
    """The seeds of one evaluation and how they were asked for.

    Attributes:
        seeds: the seeds, in the order given.
        spec: what the user wrote (``"9000:9005"``, ``"split test"``, a suite's entry ...).
    """

    seeds: tuple[int, ...]
    spec: str = ""

    @property
    def splits(self) -> dict[str, int]:
        """Number of seeds per split label (train, val, test, unassigned), in that order."""
        counts: dict[str, int] = {}
        for name in (*splits.SPLITS, UNASSIGNED):
            n = sum(1 for s in self.seeds if split_label(s) == name)
            if n:
                counts[name] = n
        return counts

    @property
    def split(self) -> str:
        """One label for the set: the split name when all seeds share it, else
        ``mixed (train 2, test 3)``."""
        counts = self.splits
        if len(counts) == 1:
            return next(iter(counts))
        return "mixed (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"

    @property
    def held_out(self) -> bool:
        """No seed is a TRAIN or VAL seed."""
        return bool(self.seeds) and all(is_held_out(s) for s in self.seeds)

    def describe(self) -> str:
        """One line for reports: ``9000..9004 (5 seeds; split test, held out)``."""
        if not self.seeds:
            return "no seeds"
        rng = (f"{min(self.seeds)}..{max(self.seeds)}" if len(self.seeds) > 1
               else str(self.seeds[0]))
        held = "held out" if self.held_out else "NOT held out"
        return f"{rng} ({len(self.seeds)} seeds; split {self.split}, {held})"

    def to_dict(self) -> dict:
        """The label every report/JSON carries."""
        return {"spec": self.spec, "count": len(self.seeds),
                "first": min(self.seeds) if self.seeds else None,
                "last": max(self.seeds) if self.seeds else None,
                "split": self.split, "splits": self.splits, "held_out": self.held_out}


def seed_set(spec: Any, label: str | None = None) -> SeedSet:
    """A :class:`SeedSet` from any :func:`parse_seeds` input; ``label`` overrides its ``spec``
    text."""
    return SeedSet(tuple(parse_seeds(spec)), label if label is not None else _spec_text(spec))


def from_seeds(seeds: Iterable[int], spec: str) -> SeedSet:
    """A :class:`SeedSet` of seeds found elsewhere (e.g. the shards of a stored split)."""
    return SeedSet(tuple(int(s) for s in seeds), spec)


def _spec_text(spec: Any) -> str:
    if isinstance(spec, dict):
        count = spec.get("count")
        return f"split {spec.get('split')}" + (f" (first {count})" if count is not None else "")
    if isinstance(spec, (list, tuple)):
        return ",".join(str(s) for s in spec)
    return str(spec)


# --- command line ----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """``--seeds SPEC`` | ``--split NAME`` (mutually exclusive) on a verb's parser.

    Args:
        default: what the verb uses without either, for the help text.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seeds", default=None, metavar="SPEC",
                       help=f"{SEED_SYNTAX} (default: {default})")
    group.add_argument("--split", default=None, choices=tuple(splits.SPLITS),
                       help="every seed of this split instead of --seeds")


def from_args(args: argparse.Namespace, default: Any = None) -> SeedSet | None:
    """The verb's seeds from ``--seeds`` / ``--split``; ``default`` (any :func:`parse_seeds`
    input) when neither was given, None when there is no default either.

    Raises:
        SeedError: bad ``--seeds``.
    """
    if getattr(args, "seeds", None):
        return seed_set(args.seeds)
    if getattr(args, "split", None):
        return seed_set({"split": args.split})
    if default is None:
        return None
    return seed_set(default)


def warn_if_not_held_out(seeds: SeedSet, what: str, file: TextIO | None = None) -> None:
    """Say on stderr (or ``file``) that ``what`` is scored on TRAIN/VAL seeds."""
    if seeds.seeds and not seeds.held_out:
        print(f"note: {what} on {seeds.describe()}: TRAIN/VAL seeds are not held out; do not "
              "report these figures as held-out results", file=file or sys.stderr)
