"""``tps-eval openloop``: the VLM planner open loop on fresh simulated episodes (issue 14 item 9).

Every episode (scenario x seed; TEST seeds included, built in memory, never stored) is simulated
with the expert driving and run through the frozen detector + tracker + tokenizer
(:mod:`tps_eval.openloop.samples`); each 2 Hz sample becomes the planner's inputs through
:func:`tps_planner.vlm.inputs.frame_inputs` and is run, many frames per call, through
:class:`tps_planner.vlm.runtime.PlannerRuntime`. The plan, forecasts, intents and light state are
scored against the simulator's ground truth (:mod:`tps_eval.openloop.metrics`), beside two plan
baselines (constant velocity; following the route at the current speed) and the ablations given
with ``--ablation NAME=PATH`` (``scratch_trunk``, ``untargeted_tokens`` -- reads the untargeted
tokenizer's tokens of the same frames --, ``camera_off``).

``--paraphrases FILE`` (YAML ``{DrivingInstruction constant name | TAKE_EXIT:N: [texts]}``)
replaces every frame's instruction text with a seeded pick from the file (same pick for every
model), so wording never seen in training is tested; frames whose command the file lacks keep
their text (counted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tps_inference.manifest import sha256_file

from tps_eval.openloop import metrics as M

ABLATIONS = ("scratch_trunk", "untargeted_tokens", "camera_off")
BASELINES = ("constant_velocity", "follow_route")
UNTARGETED = "untargeted"
DEFAULT_DURATION_S = 20.0
DEFAULT_SAMPLE_EVERY = 5
DEFAULT_BATCH = 8               # frames per planner call (1 thread: 8 ~ 40 ms/frame, 32 ~ 49 ms, 1 ~ 72 ms)
PERCEPTION_THREADS = 2          # detector + tokenizer threads when everything runs in this process
PLAN_KEYS = ("l2_1s", "l2_2s", "l2_3s", "l2_mean", "l2_avg_1s", "l2_avg_2s", "l2_avg_3s", "l2_avg_mean",
             "collision_rate", "collision_rate_1s", "collision_rate_2s", "collision_rate_3s",
             "instruction_following")
MODEL_KEYS = ("min_ade_3s", "min_fde_3s", "miss_rate", "intent_acc", "light_state_acc",
              "light_state_acc_signalised")


def default_model() -> Path:
    from tps_eval.suite import repo_root

    return repo_root() / "models" / "planner" / "planner.pt"


# --- paraphrases -----------------------------------------------------------------------------------
def load_paraphrases(path: str | os.PathLike) -> dict:
    """``{(command, exit_number or None): [texts]}`` from a YAML file (module docstring).

    Raises:
        ValueError: unreadable file, unknown constant, or a value that is not a non-empty list of
            non-empty strings (named).
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"paraphrase file {path}: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"paraphrase file {path}: expected a mapping of DrivingInstruction constant "
                         f"names to lists of texts")
    out = {}
    for key, texts in data.items():
        name, _, num = str(key).partition(":")
        if name not in M.COMMANDS:
            raise ValueError(f"paraphrase file {path}: unknown instruction {key!r}; one of "
                             f"{sorted(M.COMMANDS)} (or TAKE_EXIT:N)")
        if num and (name != "TAKE_EXIT" or not num.isdigit() or int(num) < 1):
            raise ValueError(f"paraphrase file {path}: {key!r}: an exit number (TAKE_EXIT:N, N >= 1) only")
        if (not isinstance(texts, list) or not texts
                or not all(isinstance(t, str) and t.strip() for t in texts)):
            raise ValueError(f"paraphrase file {path}: {key!r} must map to a non-empty list of texts")
        out[(M.COMMANDS[name], int(num) if num else None)] = [t.strip() for t in texts]
    return out


def paraphrase(table: dict, command: int, exit_number: int, scenario: str, seed: int, frame: int,
               pick_seed: int = 0) -> str | None:
    """A seeded pick for one frame (the same for every model), or None when the file has no entry."""
    texts = table.get((int(command), int(exit_number))) if int(command) == M.COMMANDS["TAKE_EXIT"] else None
    texts = texts or table.get((int(command), None))
    if not texts:
        return None
    rng = np.random.default_rng([int(pick_seed), int(seed), zlib.crc32(scenario.encode()), int(frame)])
    return texts[int(rng.integers(len(texts)))]


# --- accumulating ----------------------------------------------------------------------------------
class Scores:
    """Per-frame and per-agent results of one system (a model, a baseline) over every episode."""

    def __init__(self, name: str, forecasts: bool):
        self.name, self.forecasts = name, forecasts
        self.f: dict[str, list] = {k: [] for k in ("scenario", "err", "coll", "counted", "command", "checkable",
                                                    "realised", "incomplete")}
        self.a: dict[str, list] = {"scenario": [], "ade": [], "fde": []}
        self.i: dict[str, list] = {"scenario": [], "pred": [], "label": []}
        self.lt: dict[str, list] = {"scenario": [], "pred": [], "label": []}
        self.k = 1
        self.infer_s = 0.0

    def add_plans(self, ctx: dict, plans: np.ndarray) -> None:
        n = len(plans)
        self.f["scenario"] += [ctx["scenario"]] * n
        self.f["err"].append(M.l2_per_step(plans, ctx["plan"], ctx["plan_valid"]))
        self.f["coll"].append(np.stack([M.plan_collisions(plans[i], ctx["ego_size"], ctx["gt"][i]) for i in range(n)]))
        self.f["counted"].append(ctx["counted"])
        self.f["command"].append(np.full(n, ctx["command"]))
        self.f["checkable"].append(ctx["checkable"])
        self.f["incomplete"].append(ctx["incomplete"])
        self.f["realised"].append(np.array([M.realises(ctx["command"], M.manoeuvre(plans[i], ctx["pose"][i], ctx["route"]))
                                            for i in range(n)], bool))

    def add_forecasts(self, scenario: str, modes: np.ndarray, target: np.ndarray) -> None:
        ade, fde = M.forecast_errors(modes, target)
        self.k = int(modes.shape[1]) if modes.ndim == 4 else self.k
        self.a["scenario"] += [scenario] * len(ade)
        self.a["ade"].append(ade)
        self.a["fde"].append(fde)

    def add_labels(self, kind: str, scenario: str, pred: np.ndarray, label: np.ndarray) -> None:
        d = self.i if kind == "intent" else self.lt
        d["scenario"] += [scenario] * len(label)
        d["pred"].append(np.asarray(pred, np.int64).reshape(-1))
        d["label"].append(np.asarray(label, np.int64).reshape(-1))

    def summary(self, scenario: str | None = None) -> dict:
        def cat(d, key, shape_tail=()):
            if not d[key]:
                return np.zeros((0, *shape_tail))
            x = np.concatenate(d[key])
            return x if scenario is None else x[np.asarray(d["scenario"]) == scenario]

        steps = self.f["err"][0].shape[1] if self.f["err"] else 8
        out = M.l2_summary(cat(self.f, "err", (steps,)))
        out.update(M.collision_summary(cat(self.f, "coll", (3,)), cat(self.f, "counted", (3,))))
        out.update(M.instruction_summary(cat(self.f, "command"), cat(self.f, "checkable"), cat(self.f, "realised"),
                                         cat(self.f, "incomplete")))
        out["frames"] = int(len(cat(self.f, "command")))
        if self.forecasts:
            out.update(M.forecast_summary(cat(self.a, "ade"), cat(self.a, "fde"), self.k))
        if self.i["label"] or self.lt["label"]:
            ip, il = cat(self.i, "pred"), cat(self.i, "label")
            lp, ll = cat(self.lt, "pred"), cat(self.lt, "label")
            from tps_planner.vlm.layout import LIGHT_NONE

            sig = ll != LIGHT_NONE
            out.update({"intent_acc": M.accuracy(ip, il), "intent_agents": int(len(il)),
                        "light_state_acc": M.accuracy(lp, ll),
                        "light_state_acc_signalised": M.accuracy(lp[sig], ll[sig]),
                        "light_frames_signalised": int(sig.sum())})
        return out


# --- one episode -------------------------------------------------------------------------------------
def episode_context(s: dict, meta: dict, ego_size: tuple) -> dict:
    """What every system of one episode is scored against (per sample frame)."""
    n = len(s["t_s"])
    plan, valid = s["plan"].astype(np.float64), s["plan_valid"]
    steps = [M.horizon_step(t) for t in M.HORIZONS_S]
    instr = meta["instruction"]
    command = int(instr["command"])
    incomplete = ~valid.all(1)
    checkable = np.array([not incomplete[i] and M.realises(command, M.manoeuvre(plan[i], s["ego_pose"][i], s["route"]))
                          for i in range(n)], bool)
    gt = []
    for i in range(n):
        m = s["gt_mask"][i]
        gt.append(M.agent_boxes_per_step(s["gt_box"][i][m], s["gt_future"][i][m], s["gt_future_valid"][i][m]))
    return {"scenario": meta["scenario"], "seed": int(meta["seed"]), "plan": plan, "plan_valid": valid,
            "counted": valid[:, steps], "command": command, "exit_number": int(instr.get("exit_number", 0) or 0),
            "checkable": checkable, "incomplete": incomplete, "pose": s["ego_pose"], "route": s["route"],
            "gt": gt, "ego_size": ego_size}


def model_frames(cfg, s: dict, meta: dict, variant: str = "targeted") -> list[dict]:
    """Every sample of an episode as the planner's inputs (:func:`tps_planner.vlm.inputs.frame_inputs`)."""
    from tps_planner.vlm.inputs import frame_inputs

    code_key, qerr_key = ("tok_code", "tok_qerr") if variant == "targeted" else \
        (f"tok_code_{variant}", f"tok_qerr_{variant}")
    target = float(meta["instruction"].get("target_speed_mps", -1.0))
    frames = []
    for i in range(len(s["t_s"])):
        m = s["tok_mask"][i]
        stop = float(s["stop_line_m"][i])
        frames.append(frame_inputs(
            cfg, speed_mps=float(s["ego_speed"][i]), accel_mps2=float(s["ego_accel"][i]),
            yaw_rate_rps=float(s["ego_yaw_rate"][i]), route_xy=s["route"], pose=s["ego_pose"][i],
            stop_line_m=stop if np.isfinite(stop) else None, target_speed_mps=target,
            tok_code=s[code_key][i][m], tok_geom=s["tok_geom"][i][m], tok_qerr=s[qerr_key][i][m],
            tok_id=s["tok_id"][i][m], image=s["image"][i]))
    return frames


def run_model(runtime, frames: list[dict], texts: list[str], batch: int) -> dict:
    """Outputs of every frame (agent slots padded back to the frames' own count)."""
    from tps_planner.vlm.inputs import stack_frames

    outs: dict[str, list] = {}
    a = frames[0]["agent_mask"].shape[0]
    for b0 in range(0, len(frames), batch):
        res = runtime.run(stack_frames(frames[b0:b0 + batch]), texts[b0:b0 + batch])
        for k, v in res.items():
            if k in ("relevance", "intent", "lead", "modes", "mode_probs") and v.shape[1] < a:
                pad = np.zeros((v.shape[0], a - v.shape[1], *v.shape[2:]), v.dtype)
                v = np.concatenate([v, pad], 1)
            outs.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}


def score_model(sc: Scores, ctx: dict, s: dict, frames: list[dict], out: dict) -> None:
    """Plan, forecast, intent and light scores of one model on one episode."""
    from tps_planner.vlm.layout import INTENT_UNKNOWN

    scenario = ctx["scenario"]
    sc.add_plans(ctx, out["trajectory"].astype(np.float64))
    modes, targets, ip, il = [], [], [], []
    for i, f in enumerate(frames):
        for j in np.nonzero(f["agent_mask"])[0]:
            slot = int(f["agent_index"][j])
            if s["tok_gt"][i, slot] < 0:
                continue
            if s["fut_valid"][i, slot].all():
                modes.append(out["modes"][i, j])
                targets.append(s["fut"][i, slot])
            lab = int(s["intent"][i, slot])
            if lab > INTENT_UNKNOWN:
                ip.append(int(np.argmax(out["intent"][i, j])))
                il.append(lab)
    if modes:
        sc.add_forecasts(scenario, np.asarray(modes, np.float64), np.asarray(targets, np.float64))
    sc.add_labels("intent", scenario, np.asarray(ip), np.asarray(il))
    sc.add_labels("light", scenario, np.argmax(out["light"], -1), s["light"].astype(np.int64))


def score_baselines(scores: dict, ctx: dict, s: dict) -> None:
    n = len(s["t_s"])
    speed = s["ego_speed"].astype(np.float64)
    scores["constant_velocity"].add_plans(ctx, np.stack([M.constant_velocity_plan(speed[i]) for i in range(n)]))
    scores["follow_route"].add_plans(ctx, np.stack([M.follow_route_plan(s["route"], s["ego_pose"][i], speed[i])
                                                    for i in range(n)]))
    scores["expert"].add_plans(ctx, ctx["plan"])
    modes, targets = [], []
    for i in range(n):
        ok = s["tok_mask"][i] & (s["tok_gt"][i] >= 0) & s["fut_valid"][i].all(1)
        if ok.any():
            modes.append(M.constant_velocity_forecast(s["tok_geom"][i][ok]))
            targets.append(s["fut"][i][ok])
    if modes:
        scores["constant_velocity"].add_forecasts(ctx["scenario"], np.concatenate(modes), np.concatenate(targets))


# --- building episodes (in this process or in worker processes) -----------------------------------------
_WORKER: dict = {}


def _init_builder(perception_backend: str, threads: int, untargeted: bool) -> None:
    """The frozen detector + tracker + tokenizer (and the untargeted token backend) of this process."""
    from tps_eval.openloop import samples as SM

    core, info = SM.make_core(perception_backend, threads)
    extra = {UNTARGETED: SM.make_token_backend(perception_backend, UNTARGETED, threads)[0]} if untargeted else {}
    _WORKER.update(core=core, info=info, extra=extra)


def _build(scenario: str, seed: int, duration_s: float, sample_every: int, instructions: str = "fixed") -> tuple:
    """(samples, meta, simulate_s, perception_s) of one fresh episode, in memory (``instructions``:
    "seeded" = a seeded pick among the scenario's instruction variants, executed by the expert)."""
    from tps_eval.openloop import samples as SM

    t0 = time.monotonic()
    world = {"instruction": "seeded"} if instructions == "seeded" else {}
    arrays = SM.simulate(scenario, seed, duration_s=duration_s, sample_every=sample_every, **world)
    t1 = time.monotonic()
    s = SM.episode_samples(arrays, _WORKER["core"], sample_every, SM.DEFAULT_MAX_AGENTS, SM.DEFAULT_MAX_GT,
                           extra_tokens=_WORKER["extra"])
    meta = json.loads(str(arrays["meta_json"]))
    meta.update({"scenario": scenario, "seed": int(seed)})
    return s, meta, t1 - t0, time.monotonic() - t1


def episode_stream(episodes: list, workers: int, init_args: tuple, build_args: tuple):
    """Yield ((seed, scenario), result or the exception) in the order of ``episodes``; ``workers``
    > 1 builds them ahead in that many spawned processes (each with its own detector + tokenizer)
    while the caller runs the planner; closing the generator cancels what has not started."""
    if workers <= 1:
        _init_builder(*init_args)
        for seed, scenario in episodes:
            try:
                yield (seed, scenario), _build(scenario, seed, *build_args)
            except Exception as exc:  # noqa: BLE001 - reported per episode by the caller
                yield (seed, scenario), exc
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_builder,
                             initargs=init_args)
    try:
        futures = [ex.submit(_build, scenario, seed, *build_args) for seed, scenario in episodes]
        for key, fut in zip(episodes, futures, strict=True):
            try:
                yield key, fut.result()
            except Exception as exc:  # noqa: BLE001 - reported per episode by the caller
                yield key, exc
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# --- the verb ------------------------------------------------------------------------------------------
def parse_ablations(items: list[str] | None) -> dict:
    """``NAME=PATH`` items -> {name: Path}.

    Raises:
        ValueError: malformed item, unknown name, repeated name, or a missing file (named).
    """
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--ablation {item!r}: expected NAME=PATH")
        if name not in ABLATIONS:
            raise ValueError(f"--ablation {item!r}: unknown ablation {name!r}; one of {ABLATIONS}")
        if name in out:
            raise ValueError(f"--ablation {name} given twice")
        if not Path(path).is_file():
            raise ValueError(f"--ablation {name}: no model file {path}")
        out[name] = Path(path)
    return out


def _round(x):
    if isinstance(x, float):
        return round(x, 5)
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v) for v in x]
    return x


def evaluate(*, seeds: list[int], scenarios: list[str], model: Path, backend: str = "torch", seed_spec: str = "",
             ablations: dict | None = None, paraphrases: dict | None = None, pick_seed: int = 0,
             duration_s: float = DEFAULT_DURATION_S, sample_every: int = DEFAULT_SAMPLE_EVERY,
             perception_backend: str = "onnxruntime-int8", threads: int = 1, batch: int = DEFAULT_BATCH,
             progress: bool = True, time_budget_s: float | None = None, workers: int = 1,
             instructions: str = "fixed") -> dict:
    """Run the evaluation; returns the result dict (the JSON's content, module docstring of
    :mod:`tps_eval.openloop.metrics` for the definitions). Episodes run seed by seed, every
    scenario of a seed before the next seed; with ``time_budget_s`` no new seed starts once the
    budget would be exceeded by another round as long as the longest so far (``counts`` then says k
    of n and ``stopped_early`` why). ``workers`` > 1: episodes are simulated and tokenized ahead in
    that many processes (perception with one thread each) while this process runs the planner
    (``threads``: 1 by default -- torch with 2 threads on 2 busy cores ran ~6x slower per frame).
    ``instructions`` "seeded": each episode's instruction is a seeded pick among its scenario's
    variants (highway: keep lane, change lane left / right, a requested speed), which the expert
    executes; "fixed": every scenario's own."""
    if instructions not in ("fixed", "seeded"):
        raise ValueError(f"instructions: 'fixed' or 'seeded', got {instructions!r}")
    from tps_planner.vlm.runtime import PlannerRuntime
    from tps_sim.world.networks import EGO_LENGTH_M, EGO_WIDTH_M
    from tqdm import tqdm

    from tps_eval.openloop import samples as SM

    t_start = time.monotonic()
    ablations = dict(ablations or {})
    runtimes = {"planner": PlannerRuntime(model, backend, threads)}
    for name, path in ablations.items():
        runtimes[name] = PlannerRuntime(path, backend, threads)
    variant = {k: (UNTARGETED if k == "untargeted_tokens" else "targeted") for k in runtimes}
    _, core_info = SM.make_core(perception_backend, 1)      # what the builders run (files, sha256)
    perception_threads = 1 if workers > 1 else PERCEPTION_THREADS
    episodes = [(seed, sc) for seed in seeds for sc in scenarios]
    stream = episode_stream(episodes, workers, (perception_backend, perception_threads, UNTARGETED in variant.values()),
                            (duration_s, sample_every, instructions))
    ego_size = (EGO_LENGTH_M, EGO_WIDTH_M)
    scores = {k: Scores(k, forecasts=True) for k in runtimes}
    for k in BASELINES:
        scores[k] = Scores(k, forecasts=k == "constant_velocity")
    scores["expert"] = Scores("expert", forecasts=False)
    bar = tqdm(total=len(episodes), desc="openloop", unit="episode", disable=not progress, dynamic_ncols=True)
    counts: dict = {sc: {"episodes": 0, "frames": 0} for sc in scenarios}
    errors, timing = [], {"simulate_s": 0.0, "perception_s": 0.0, "inputs_s": 0.0, "scoring_s": 0.0}
    para = {"frames_paraphrased": 0, "frames_kept": 0, "examples": {}}
    instructions = {}
    stopped, round_start, longest_round, last_seed = None, time.monotonic(), 0.0, None
    for (seed, scenario), built in stream:
        if seed != last_seed:
            now = time.monotonic()
            if last_seed is not None:
                longest_round = max(longest_round, now - round_start)
            round_start, last_seed = now, seed
            if time_budget_s is not None and last_seed is not None and longest_round > 0 and \
                    now - t_start + longest_round > time_budget_s:
                stopped = (f"time budget {time_budget_s / 60:g} min: another seed round (~{longest_round:.0f} s) "
                           f"would exceed it; stopped before seed {seed}")
                stream.close()
                tqdm.write(f"openloop: {stopped}", file=sys.stderr)
                break
        bar.set_postfix_str(f"{scenario}/seed{seed}")
        try:
            if isinstance(built, Exception):
                raise built
            s, meta, t_sim, t_perc = built
            timing["simulate_s"] += t_sim
            timing["perception_s"] += t_perc
            ctx = episode_context(s, meta, ego_size)
            instr = meta["instruction"]
            instructions[scenario] = {k: instr[k] for k in ("text", "command", "exit_number", "target_speed_mps")}
            texts = []
            for i in range(len(s["t_s"])):
                alt = None if paraphrases is None else paraphrase(
                    paraphrases, instr["command"], instr.get("exit_number", 0) or 0, scenario, seed,
                    int(s["frame"][i]), pick_seed)
                texts.append(alt if alt is not None else instr["text"])
                if paraphrases is not None:
                    para["frames_paraphrased" if alt is not None else "frames_kept"] += 1
                    if alt is not None:
                        para["examples"].setdefault(M.COMMAND_NAMES.get(int(instr["command"]), "?"), set()).add(alt)
            for name, rt in runtimes.items():
                t3 = time.monotonic()
                frames = model_frames(rt.cfg, s, meta, variant[name])
                t4 = time.monotonic()
                out = run_model(rt, frames, texts, batch)
                t5 = time.monotonic()
                score_model(scores[name], ctx, s, frames, out)
                scores[name].infer_s += t5 - t4
                timing["inputs_s"] += t4 - t3
                timing["scoring_s"] += time.monotonic() - t5
            t6 = time.monotonic()
            score_baselines(scores, ctx, s)
            timing["scoring_s"] += time.monotonic() - t6
            counts[scenario]["episodes"] += 1
            counts[scenario]["frames"] += len(s["t_s"])
        except Exception as exc:  # noqa: BLE001 - one failed episode is reported, the run continues
            errors.append(f"{scenario}/seed{seed}: {type(exc).__name__}: {exc}")
            tqdm.write(f"openloop: episode {scenario}/seed{seed} failed: {type(exc).__name__}: {exc}",
                       file=sys.stderr)
        bar.update(1)
    stream.close()
    bar.close()
    if not any(c["episodes"] for c in counts.values()):
        raise RuntimeError("no episode could be evaluated: " + "; ".join(errors))
    used = sorted({sd for sd, _ in episodes[:sum(c["episodes"] for c in counts.values()) + len(errors)]})
    res = assemble(scores, runtimes, ablations, counts, errors, timing, para, instructions, seeds=used or seeds,
                    scenarios=scenarios, duration_s=duration_s, sample_every=sample_every, core_info=core_info,
                    paraphrases=paraphrases, wall_s=time.monotonic() - t_start, backend=backend,
                    seed_spec=seed_spec)
    res["timing"]["workers"] = workers
    res["instructions"]["choice"] = instructions
    res["counts"]["episodes_asked"] = len(episodes)
    res["counts"]["seeds_asked"] = len(seeds)
    res["counts"]["seeds_run"] = len(used)
    res["stopped_early"] = stopped
    return res


def assemble(scores, runtimes, ablations, counts, errors, timing, para, instructions, *, seeds, scenarios,
             duration_s, sample_every, core_info, paraphrases, wall_s, backend, seed_spec="") -> dict:
    from tps_eval import seeds as S

    def plan_keys(d: dict) -> dict:
        keep = PLAN_KEYS + (("frames_l2_1s", "frames_l2_2s", "frames_l2_3s", "collision_frames", "if_checkable",
                             "if_excluded", "if_per_command", "frames"))
        out = {k: d.get(k) for k in keep}
        # every key for every system; None where the system has no such output (a baseline has no
        # intents or light state; following the route forecasts nobody)
        out.update({k: d.get(k) for k in MODEL_KEYS + ("forecast_agents", "forecast_modes", "intent_agents",
                                                       "light_frames_signalised")})
        return out

    main = plan_keys(scores["planner"].summary())
    res: dict = dict(main)
    res["per_scenario"] = {sc: plan_keys(scores["planner"].summary(sc)) for sc in scenarios
                           if counts[sc]["episodes"]}
    res["baselines"] = {k: dict(plan_keys(scores[k].summary()),
                                per_scenario={sc: plan_keys(scores[k].summary(sc)) for sc in scenarios
                                              if counts[sc]["episodes"]})
                        for k in BASELINES}
    res["baselines_note"] = ("plan keys as for the planner; intent_acc / light_state_acc are null (a baseline "
                             "says nothing about them); constant_velocity forecasts every token straight on "
                             "at its velocity (K = 1); follow_route forecasts nothing")
    res["ablations"], notes, margins = {}, {}, {}
    for name in ABLATIONS:
        if name in runtimes:
            d = plan_keys(scores[name].summary())
            res["ablations"][name] = d
            notes[name] = f"model {ablations[name]}" + (" (reads the untargeted tokenizer's tokens)"
                                                         if name == "untargeted_tokens" else "")
            margins[name] = {k: (None if d.get(k) is None or main.get(k) is None else d[k] - main[k])
                             for k in ("l2_mean", "collision_rate", "min_ade_3s", "instruction_following",
                                       "light_state_acc", "light_state_acc_signalised", "intent_acc")}
        else:
            res["ablations"][name] = None
            notes[name] = f"not measured: no model given (--ablation {name}=PATH)"
    res["ablation_notes"] = notes
    res["ablation_margins"] = {"definition": "ablation minus planner (positive L2 / collision = the ablation is "
                                             "worse; negative accuracy = the ablation is worse)", **margins}
    res["reference"] = {"expert": {k: v for k, v in plan_keys(scores["expert"].summary()).items()
                                   if k.startswith("collision") or k in ("instruction_following", "if_checkable")}}
    rt = runtimes["planner"]
    seed_set = S.from_seeds(seeds, seed_spec or f"{min(seeds)}..{max(seeds)}")
    res["counts"] = {"episodes": sum(c["episodes"] for c in counts.values()),
                     "episodes_asked": len(seeds) * len(scenarios),
                     "frames": sum(c["frames"] for c in counts.values()), "per_scenario": counts,
                     "errors": errors}
    res["model"] = {"path": str(rt.path), "backend": backend, "runs": getattr(rt, "describe", backend),
                    "sha256": sha256_file(rt.path) if rt.path.is_file() else None, "config": rt.cfg.to_dict(),
                    "trained": {k: rt.summary.get(k) for k in ("steps", "epochs", "wall_s", "train_samples")
                                if k in rt.summary}}
    res["perception"] = core_info
    res["instructions"] = {"per_scenario": instructions,
                           "paraphrases": None if paraphrases is None else {
                               "frames_paraphrased": para["frames_paraphrased"], "frames_kept": para["frames_kept"],
                               "texts_used": {k: sorted(v) for k, v in para["examples"].items()}}}
    res["seeds"] = seed_set.to_dict()
    res.update({"split": seed_set.split, "held_out": seed_set.held_out, "scenarios": list(scenarios),
                "duration_s": duration_s, "sample_every": sample_every, "sample_hz": 10.0 / sample_every})
    res["definitions"] = {
        "l2": "at t: distance at exactly t; l2_mean = mean of l2_1s, l2_2s, l2_3s. avg: per frame the mean "
              "distance over 0.5 s steps up to t (ST-P3/VAD), l2_avg_mean likewise",
        "collision_rate": "mean of collision_rate_1s/2s/3s; collision_rate_t = share of frames whose ego box "
                          "along the plan overlaps a ground-truth agent box (oriented) at any 0.5 s step up to t",
        "forecast": f"K modes, agents = tokens matched to ground truth with a full 3 s future; miss = minFDE > "
                    f"{M.MISS_THRESHOLD_M} m",
        "instruction_following": "share of checkable frames (the expert's own 4 s plan realises the command) "
                                 "whose plan realises it",
        "instruction_rules": M.RULES,
        "light_state_acc_signalised": "light accuracy on frames whose governing light is not 'none'",
    }
    res["timing"] = {**{k: round(v, 1) for k, v in timing.items()},
                     "model_s": {k: round(scores[k].infer_s, 1) for k in runtimes},
                     "eval_wall_s": round(wall_s, 1), "host_cpus": os.cpu_count(),
                     "loadavg": list(os.getloadavg()),
                     "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")}
    return _round(res)



# --- Markdown ----------------------------------------------------------------------------------------
ROWS = (("l2_1s", "L2 @1 s [m]", "{:.3f}"), ("l2_2s", "L2 @2 s [m]", "{:.3f}"), ("l2_3s", "L2 @3 s [m]", "{:.3f}"),
        ("l2_mean", "**L2 mean (at t) [m]**", "{:.3f}"),
        ("l2_avg_1s", "L2 avg to 1 s [m]", "{:.3f}"), ("l2_avg_2s", "L2 avg to 2 s [m]", "{:.3f}"),
        ("l2_avg_3s", "L2 avg to 3 s [m]", "{:.3f}"), ("l2_avg_mean", "L2 mean (avg to t) [m]", "{:.3f}"),
        ("collision_rate_1s", "collision up to 1 s", "{:.2%}"),
        ("collision_rate_2s", "collision up to 2 s", "{:.2%}"), ("collision_rate_3s", "collision up to 3 s", "{:.2%}"), ("collision_rate", "**collision rate (mean)**", "{:.2%}"),
        ("instruction_following", "instruction following", "{:.1%}"),
        ("min_ade_3s", "minADE@3 s [m]", "{:.3f}"), ("min_fde_3s", "minFDE@3 s [m]", "{:.3f}"),
        ("miss_rate", "miss rate (FDE > 2 m)", "{:.1%}"), ("intent_acc", "intent accuracy", "{:.1%}"),
        ("light_state_acc", "light-state accuracy", "{:.1%}"),
        ("light_state_acc_signalised", "light-state acc. (light ahead)", "{:.1%}"),
        ("frames", "frames", "{:d}"))


def _fmt(v, f: str) -> str:
    if v is None:
        return "-"
    try:
        return f.format(v)
    except (ValueError, TypeError):
        return str(v)


def to_markdown(res: dict) -> str:
    cols = [("planner", res)] + [(k, res["baselines"][k]) for k in BASELINES] + \
        [(k, res["ablations"][k]) for k in ABLATIONS if res["ablations"].get(k) is not None]
    seeds = res["seeds"]
    lines = [f"# Open-loop planner evaluation ({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')})", "",
             f"Model `{res['model']['path']}` ({res['model']['backend']}); seeds {seeds['first']}..{seeds['last']} "
             f"({seeds['count']} per scenario; split {res['split']}, "
             f"{'held out' if res['held_out'] else 'NOT held out'}); {res['counts']['episodes']} of "
             f"{res['counts']['episodes_asked']} episodes, {res['counts']['frames']} frames at "
             f"{res['sample_hz']:g} Hz, {res['duration_s']:g} s each.", ""]
    if res.get("stopped_early"):
        lines += [f"**Stopped early** ({res['stopped_early']}): {res['counts']['seeds_run']} of "
                  f"{res['counts']['seeds_asked']} seeds per scenario.", ""]
    p = res["instructions"]["paraphrases"]
    if p is not None:
        lines += [f"Instructions paraphrased: {p['frames_paraphrased']} frames ({p['frames_kept']} kept their "
                  "text: the file has no entry for their command).", ""]
    lines += ["| metric | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for key, label, f in ROWS:
        lines.append(f"| {label} | " + " | ".join(_fmt(d.get(key), f) for _, d in cols) + " |")
    missing = [f"{k}: {res['ablation_notes'][k]}" for k in ABLATIONS if res["ablations"].get(k) is None]
    if missing:
        lines += ["", "Ablations not measured: " + "; ".join(missing) + "."]
    exp = res["reference"]["expert"]
    lines += ["", f"Reference: the expert's own plan collides (same box test) in "
              f"{_fmt(exp.get('collision_rate'), '{:.2%}')} (mean of horizons; "
              f"{_fmt(exp.get('collision_rate_3s'), '{:.2%}')} up to 3 s) of frames -- the floor of this metric.", ""]
    lines += ["Per scenario (planner | constant velocity | follow route):", "",
              "| scenario | frames | L2 mean | CV L2 | route L2 | collision | CV coll. | route coll. | minADE@3 s "
              "| instr. following (checkable) | light acc. |", "|---|" + "---|" * 10]
    for sc, d in res["per_scenario"].items():
        cv, fr = res["baselines"]["constant_velocity"]["per_scenario"][sc], res["baselines"]["follow_route"]["per_scenario"][sc]
        lines.append(f"| {sc} | {d['frames']} | {_fmt(d['l2_mean'], '{:.3f}')} | {_fmt(cv['l2_mean'], '{:.3f}')} | "
                     f"{_fmt(fr['l2_mean'], '{:.3f}')} | {_fmt(d['collision_rate'], '{:.2%}')} | "
                     f"{_fmt(cv['collision_rate'], '{:.2%}')} | {_fmt(fr['collision_rate'], '{:.2%}')} | "
                     f"{_fmt(d['min_ade_3s'], '{:.3f}')} | {_fmt(d['instruction_following'], '{:.1%}')} "
                     f"({d['if_checkable']}) | {_fmt(d['light_state_acc'], '{:.1%}')} |")
    lines += ["", "Instruction following per command (planner; checkable = the expert's plan realises it):", "",
              "| command | rule | checkable | realised | share | excluded (not possible / incomplete) |",
              "|---|---|---|---|---|---|"]
    for name, d in res["if_per_command"].items():
        rule = M.RULES.get(name, "-").replace("|", "\\|")     # a pipe would split the table cell
        lines.append(f"| {name} | {rule} | {d['checkable']} | {d['realised']} | "
                     f"{_fmt(d['share'], '{:.1%}')} | {d['excluded_not_possible']} / {d['excluded_incomplete']} |")
    if res["counts"]["errors"]:
        lines += ["", "Failed episodes: " + "; ".join(res["counts"]["errors"])]
    t = res["timing"]
    lines += ["", f"Wall {t['eval_wall_s']:.0f} s (simulation {t['simulate_s']:.0f} s, perception "
              f"{t['perception_s']:.0f} s{' summed over the build workers' if t.get('workers', 1) > 1 else ''}, "
              f"model {sum(t['model_s'].values()):.0f} s) on {t['host_cpus']} CPUs, "
              f"load {t['loadavg'][0]:.2f}. Definitions: docs/METRICS.md \"Open-loop planning\"."]
    return "\n".join(lines) + "\n"


# --- command line ---------------------------------------------------------------------------------------
def add_arguments(ap: argparse.ArgumentParser) -> None:
    from tps_eval import seeds as S

    S.add_arguments(ap, default="--split test")
    ap.add_argument("--count", type=int, default=None,
                    help="use only the first N of the seeds (e.g. --split test --count 10)")
    ap.add_argument("--scenarios", default="all", help="'all' or a comma-separated list of tps_sim scenarios")
    ap.add_argument("--model", type=Path, default=None, help="planner checkpoint (default models/planner/planner.pt)")
    ap.add_argument("--backend", default="torch", help="PlannerRuntime backend (default torch)")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=PATH",
                    help=f"an ablation's checkpoint, repeatable; NAME one of {', '.join(ABLATIONS)} "
                         "(untargeted_tokens reads the untargeted tokenizer's tokens)")
    ap.add_argument("--paraphrases", type=Path, default=None,
                    help="YAML {DrivingInstruction constant | TAKE_EXIT:N: [texts]}: each frame's instruction "
                         "text replaced by a seeded pick")
    ap.add_argument("--paraphrase-seed", type=int, default=0, help="seed of the paraphrase picks")
    ap.add_argument("--instructions", default="fixed", choices=("fixed", "seeded"),
                    help="fixed: every scenario's own instruction; seeded: a seeded pick per episode among the "
                         "scenario's instruction variants (highway: keep lane, change lane left/right, 80 km/h), "
                         "executed by the expert")
    ap.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="episode length [s]")
    ap.add_argument("--sample-every", type=int, default=DEFAULT_SAMPLE_EVERY,
                    help="a scored frame every N 0.1 s frames (default 5 = 2 Hz, as in training)")
    ap.add_argument("--perception-backend", default="onnxruntime-int8",
                    choices=("torch", "onnxruntime", "onnxruntime-int8"), help="frozen detector + tokenizer")
    ap.add_argument("--threads", type=int, default=1, help="threads of the planner (torch / ORT)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes that simulate and tokenize episodes ahead while the planner runs (default 1: "
                         "everything in this process)")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="frames per planner call")
    ap.add_argument("--json", type=Path, default=None, help="write the result here (Markdown next to it)")
    ap.add_argument("--md", type=Path, default=None, help="write the Markdown here (default next to --json)")
    ap.add_argument("--time-budget-min", type=float, default=None,
                    help="start no new seed once another round would pass this many minutes (the JSON "
                         "then counts k of n episodes)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tps_sim.world import SCENARIOS

    from tps_eval import seeds as S

    if args.count is not None and args.count < 1:
        raise ValueError("--count must be >= 1")
    seed_set = S.from_args(args, default={"split": "test"})
    seeds = list(seed_set.seeds)[:args.count] if args.count else list(seed_set.seeds)
    S.warn_if_not_held_out(S.from_seeds(seeds, "openloop"), "the planner is evaluated open loop")
    scenarios = list(SCENARIOS) if args.scenarios == "all" else [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        raise ValueError(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
    model = Path(args.model) if args.model else default_model()
    if not model.is_file():
        raise ValueError(f"no planner model at {model}: train one (make train-planner, then ship it to "
                         "models/planner/planner.pt) or pass --model PATH")
    from tps_planner.vlm.runtime import BACKENDS

    if args.backend not in BACKENDS:
        raise ValueError(f"--backend {args.backend!r}: one of {BACKENDS}")
    ablations = parse_ablations(args.ablation)
    table = load_paraphrases(args.paraphrases) if args.paraphrases else None
    spec = seed_set.spec + (f" (first {args.count})" if args.count else "")
    res = evaluate(seeds=seeds, scenarios=scenarios, model=model, backend=args.backend, seed_spec=spec, ablations=ablations,
                   paraphrases=table, pick_seed=args.paraphrase_seed, duration_s=args.duration,
                   sample_every=args.sample_every, perception_backend=args.perception_backend,
                   threads=args.threads, batch=args.batch, progress=not args.quiet,
                   time_budget_s=None if args.time_budget_min is None else 60.0 * args.time_budget_min,
                   workers=args.workers, instructions=args.instructions)
    if args.paraphrases:
        res["instructions"]["paraphrases"]["file"] = str(args.paraphrases)
    md = to_markdown(res)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
        print(f"json: {args.json}")
    md_path = args.md or (args.json.with_suffix(".md") if args.json else None)
    if md_path:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(md)
        print(f"markdown: {md_path}")
    return 0
