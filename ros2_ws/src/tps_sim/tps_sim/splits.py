"""Train / val / test split of simulation seeds.

A seed fully determines an episode (SUMO traffic, clutter, sensor noise), so splitting by seed is
splitting by episode. Test seeds are held out: never used for training, tuning, calibration or
threshold selection. Closed-loop acceptance runs and detector evaluation use TEST seeds only.
How evaluations label seeds (a seed outside every split counts as held out, TRAIN and VAL seeds
never do) is ``tps_eval.seeds``.
"""

from __future__ import annotations

TRAIN = range(0, 1000)
VAL = range(1000, 1100)
TEST = range(9000, 9100)

SPLITS = {"train": TRAIN, "val": VAL, "test": TEST}
# Failure-search episodes (tps-eval search, issue 16): not a split of the data. Searches run here,
# so they never touch TEST; training data aimed at what a search found is generated on new TRAIN
# seeds around the found parameters, and the held-out found cases are re-run on their own seeds.
SEARCH = range(5000, 6000)
# Targeted training data around what a search found (tps-sim dataset --from-search): the last
# TRAIN seeds, never used by the regular datasets (they take the first seeds of a split).
TARGETED = range(900, 1000)


def split_of(seed: int) -> str:
    """Name of the split a seed belongs to ('train', 'val', 'test'); ValueError if none."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    raise ValueError(f"seed {seed} belongs to no split (train {TRAIN}, val {VAL}, test {TEST})")


def seeds(split: str, count: int | None = None) -> list[int]:
    """The first ``count`` seeds of a split (all of them when ``count`` is None)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    pool = list(SPLITS[split])
    if count is not None:
        if count > len(pool):
            raise ValueError(f"split {split!r} has only {len(pool)} seeds, asked for {count}")
        pool = pool[:count]
    return pool
