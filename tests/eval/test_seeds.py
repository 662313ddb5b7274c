"""One seed handling for every tps-eval verb: syntax, split labels, the held-out rule."""

from __future__ import annotations

import pytest
from tps_eval import seeds as S
from tps_eval.cli import build_parser
from tps_sim import splits


def test_parse_forms():
    assert S.parse_seeds("9000:9003") == [9000, 9001, 9002]  # half-open
    assert S.parse_seeds("5") == [5]
    assert S.parse_seeds(" 1, 4,7 ") == [1, 4, 7]
    assert S.parse_seeds(12) == [12]
    assert S.parse_seeds([3, 2]) == [3, 2]
    assert S.parse_seeds({"split": "test", "count": 2}) == [9000, 9001]
    assert S.parse_seeds({"split": "val"}) == list(splits.VAL)


@pytest.mark.parametrize(("bad", "message"), [
    ("9:9", "empty"), ("9:3", "empty"), ("a:b", "cannot parse"), ("1;2", "cannot parse"),
    ("-1", "non-negative"), ("1,1", "duplicates"), ("", "no seeds"), ([1, True], "non-negative"),
    ({"split": "holdout"}, "unknown split"), ({"count": 3}, "split"),
    ({"split": "val", "count": 1000}, "only 100"), (1.5, "cannot parse"),
])
def test_parse_errors_say_what_is_wrong(bad, message):
    with pytest.raises(S.SeedError, match=message):
        S.parse_seeds(bad)


def test_split_labels_and_the_held_out_rule():
    assert [S.split_label(s) for s in (0, 999, 1000, 1099, 9000, 9099)] == [
        "train", "train", "val", "val", "test", "test"]
    # outside TRAIN and VAL (and TEST): accepted, unassigned, held out
    for seed in (1100, 5000, 9100, 123456):
        assert S.split_label(seed) == S.UNASSIGNED and S.is_held_out(seed)
    assert not S.is_held_out(0) and not S.is_held_out(1000) and S.is_held_out(9000)


def test_seed_set_label():
    test = S.seed_set("9000:9005")
    assert test.to_dict() == {"spec": "9000:9005", "count": 5, "first": 9000, "last": 9004,
                              "split": "test", "splits": {"test": 5}, "held_out": True}
    assert test.describe() == "9000..9004 (5 seeds; split test, held out)"
    mixed = S.seed_set("998,1000,9000,5000")
    assert mixed.split == "mixed (train 1, val 1, test 1, unassigned 1)"
    assert not mixed.held_out and "NOT held out" in mixed.describe()
    # one TRAIN or VAL seed is enough to lose the held-out label
    assert not S.seed_set("9000,1050").held_out
    assert S.seed_set("5000:5002").held_out and S.seed_set("5000:5002").split == S.UNASSIGNED
    assert S.seed_set({"split": "test", "count": 3}).spec == "split test (first 3)"


def test_warning_for_train_and_val_seeds(capsys):
    S.warn_if_not_held_out(S.seed_set("0:2"), "x")
    assert "not held out" in capsys.readouterr().err
    S.warn_if_not_held_out(S.seed_set("9000:9002"), "x")
    S.warn_if_not_held_out(S.seed_set("5000"), "x")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("verb", ["closedloop", "demo", "detector", "expert-check", "yield-probe"])
def test_every_seeded_verb_takes_the_same_options(verb):
    ap = build_parser()
    extra = ["--suite", "smoke"] if verb == "closedloop" else []
    args = ap.parse_args([verb, *extra, "--seeds", "9000:9002"])
    assert S.from_args(args).seeds == (9000, 9001)
    args = ap.parse_args([verb, *extra, "--split", "val"])
    assert S.from_args(args).split == "val"
    with pytest.raises(SystemExit):  # --seeds and --split exclude each other
        ap.parse_args([verb, *extra, "--seeds", "1", "--split", "val"])
    assert S.from_args(ap.parse_args([verb, *extra]), default="9000:9010").seeds[-1] == 9009


def test_help_shows_examples_seed_syntax_and_output(capsys):
    ap = build_parser()
    with pytest.raises(SystemExit):
        ap.parse_args(["-h"])
    top = capsys.readouterr().out
    for verb in ("closedloop", "demo", "suites", "detector", "expert-check", "yield-probe"):
        assert verb in top
    assert "A:B" in top
    for verb in ("closedloop", "demo", "detector", "expert-check", "yield-probe"):
        with pytest.raises(SystemExit):
            ap.parse_args([verb, "-h"])
        text = capsys.readouterr().out
        assert "examples:" in text and "half-open range [A, B)" in text, verb
        assert "output" in text and "held out" in text, verb
