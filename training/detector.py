"""Train the lidar detector: ``python -m training.detector`` (``make train-detector``).

Reads dataset shards of the TRAIN split (data/sim/train/<scenario>/seed<seed>.npz, written by
``tps-sim dataset``), trains :class:`tps_perception.model.CenterNet` with a CenterNet focal loss on
the class heatmaps and an L1 loss on the box regression, with global rotation / flip / scale
augmentation. Ground truth includes parked cars as cars (:mod:`tps_eval.detector.data`). The
network runs channels-last under bfloat16 autocast by default (``--precision``; about 2x the fp32
step rate on AVX512-BF16 CPUs); weights, losses and the optimiser stay fp32. Fixed seed, tqdm progress, a checkpoint per epoch and a CSV log under
``runs/detector/<run>/``; ``--ship`` copies the final weights + metadata to ``models/detector/``.

Validation loss is computed on VAL-split shards when present; test seeds are never read here.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tps_common.geometry import rotate_vectors
from tps_eval.detector.data import Frame, episode_frames, shard_paths, synthetic_frames
from tps_perception.backends import default_model_dir, repo_root
from tps_perception.model import CLASS_IDS, CenterNet, NetConfig
from tps_perception.pillars import BevGridParams, points_to_bev
from tps_perception.postprocess import DecodeParams, encode_targets
from tps_sim.splits import split_of
from tqdm import tqdm

REG_WEIGHT = 1.0
WARMUP = 0.05  # share of the schedule spent warming up the learning rate
MIN_POINTS_FOR_TARGET = 1  # boxes the lidar did not hit cannot be learnt; they are left out
RARE_CLASSES = (2, 3, 4, 5)  # truck, bus, pedestrian, cyclist: in 6-9 % of the training frames each


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet penalty-reduced focal loss (alpha 2, beta 4), normalised by the positives."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred ** 2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def reg_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 over all regression channels weighted by ``mask`` (1 at centres, less at neighbours),
    normalised by the number of centres."""
    m = mask[:, None]
    return F.l1_loss(pred * m, target * m, reduction="sum") / mask.eq(1).sum().clamp(min=1.0)


def augment(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Global yaw rotation (+-45 deg), y-flip and horizontal scale (0.95..1.05) of points and boxes
    together (x, y, length, width only: heights above the ground stay true)."""
    pts = points.copy()
    bx = boxes.copy()
    if rng.random() < 0.5:
        pts[:, 1] = -pts[:, 1]
        bx[:, 1] = -bx[:, 1]
        bx[:, 6] = -bx[:, 6]
    a = rng.uniform(-np.pi / 4, np.pi / 4)
    pts[:, :2] = rotate_vectors(pts[:, :2], a)
    bx[:, :2] = rotate_vectors(bx[:, :2], a)
    bx[:, 6] = bx[:, 6] + a
    sc = rng.uniform(0.95, 1.05)
    pts[:, :2] *= sc
    bx[:, [0, 1, 3, 4]] *= sc
    return pts, bx


def sample_tensors(frame: Frame, grid: BevGridParams, dec: DecodeParams, out_size: int,
                   rng: np.random.Generator | None) -> tuple[np.ndarray, ...]:
    """BEV input and targets for one frame (augmented when ``rng`` is given)."""
    keep = frame.gt_num_points >= MIN_POINTS_FOR_TARGET
    boxes, labels = frame.gt_boxes[keep], frame.gt_class[keep]
    pts = frame.points
    if rng is not None:
        # lidar frame and base_link differ by a z shift only: rotate/flip/scale about the lidar axis
        pts, boxes = augment(pts, boxes, rng)
    bev = points_to_bev(pts, grid)
    hm, reg, mask = encode_targets(boxes, labels, dec, out_size)
    return bev, hm, reg, mask


def sampling_weights(frames: list[Frame], balance: float) -> np.ndarray | None:
    """Class-balanced sampling (CBGS-like): a frame holding a lidar-hit box of a rare class is
    drawn ``1 + balance`` times as often as one without; None (a plain permutation per epoch) for
    ``balance`` 0."""
    if balance <= 0:
        return None
    w = np.ones(len(frames))
    for k, f in enumerate(frames):
        if np.isin(f.gt_class[f.gt_num_points >= MIN_POINTS_FOR_TARGET], RARE_CLASSES).any():
            w[k] += balance
    return w / w.sum()


def load_frames(split: str, root: Path | None, max_episodes: int | None, stride: int) -> list[Frame]:
    paths = shard_paths(split, root)
    if max_episodes:
        paths = paths[:max_episodes]
    frames: list[Frame] = []
    for p in tqdm(paths, desc=f"load {split}", unit="ep"):
        for f in episode_frames(p, stride=stride):
            if split_of(f.seed) != split:
                raise ValueError(f"{p}: seed {f.seed} belongs to split {split_of(f.seed)}, not {split}")
            frames.append(f)
    return frames


def evaluate_loss(model: CenterNet, frames: list[Frame], grid, dec, out_size, bf16: bool = False) -> float:
    model.eval()
    tot = 0.0
    with torch.no_grad():
        for f in frames:
            bev, hm, reg, mask = sample_tensors(f, grid, dec, out_size, None)
            x = torch.from_numpy(bev[None]).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                phm, preg = model(x)
            phm, preg = phm.float(), preg.float()
            tot += float(focal_loss(phm, torch.from_numpy(hm[None]))
                         + REG_WEIGHT * reg_loss(preg, torch.from_numpy(reg[None]), torch.from_numpy(mask[None])))
    model.train()
    return tot / max(1, len(frames))


def save_artifacts(model: CenterNet, out_dir: Path, grid: BevGridParams, dec: DecodeParams, info: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}  # channels-last -> plain
    torch.save({"state_dict": state, "net": model.cfg.to_dict(), "grid": asdict(grid),
                "decode": asdict(dec), "info": info}, out_dir / "detector.pt")
    meta = {"net": model.cfg.to_dict(), "grid": asdict(grid), "decode": asdict(dec), "info": info,
            "classes": list(CLASS_IDS)}
    (out_dir / "detector.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=None, help="dataset root (default data/sim)")
    ap.add_argument("--max-episodes", type=int, default=None, help="use at most this many train shards")
    ap.add_argument("--frame-stride", type=int, default=1, help="use every n-th frame of an episode")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"),
                    help="autocast dtype of the network's forward pass (weights stay fp32)")
    ap.add_argument("--out-stride", type=int, default=NetConfig.out_stride,
                    help="output stride of the head maps (1: 0.8 m cells, 2: 1.6 m cells)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget-min", type=float, default=40.0,
                    help="stop after the epoch that crosses this wall-clock budget (min)")
    ap.add_argument("--run-name", default="shipped")
    ap.add_argument("--ship", action="store_true", help="copy the final weights to models/detector/")
    ap.add_argument("--val-frames", type=int, default=40)
    ap.add_argument("--balance", type=float, default=0.0,
                    help="class-balanced sampling: frames with a truck/bus/pedestrian/cyclist are drawn "
                         "1 + BALANCE times as often (0: every frame once per epoch)")
    ap.add_argument("--synthetic-episodes", type=int, default=0,
                    help="smoke runs only: train on N tps_sim synthetic road scenes (real lidar model, "
                         "no SUMO) instead of dataset shards")
    ap.add_argument("--synthetic-frames", type=int, default=10, help="frames per synthetic episode")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    grid = BevGridParams()
    net_cfg = NetConfig(out_stride=args.out_stride)
    bf16 = args.precision == "bf16"
    dec = DecodeParams(range_m=grid.range_m, out_cell_m=grid.cell_m * net_cfg.out_stride)
    out_size = grid.size // net_cfg.out_stride

    if args.synthetic_episodes:
        clutters = ("none", "low", "medium", "high")
        frames = [f for k in tqdm(range(args.synthetic_episodes), desc="synthetic train", unit="ep")
                  for f in synthetic_frames(k, args.synthetic_frames, clutters[k % 4])]
    else:
        frames = load_frames("train", args.data_root, args.max_episodes, args.frame_stride)
    if not frames:
        print(f"no training shards under {(args.data_root or 'data/sim')}/train; run `tps-sim dataset` first",
              file=sys.stderr)
        return 2
    if args.synthetic_episodes:
        val_frames = synthetic_frames(1000, 4, "medium")
    else:
        val_all = load_frames("val", args.data_root, None, max(1, args.frame_stride))
        # an even spread over the val episodes (scenarios and clutter levels), not the first shard
        pick = np.linspace(0, len(val_all) - 1, min(args.val_frames, len(val_all))).round().astype(int)
        val_frames = [val_all[i] for i in sorted(set(pick.tolist()))]
    seeds = sorted({f.seed for f in frames})
    print(f"train: {len(frames)} frames from {len(seeds)} episodes (seeds {seeds[0]}..{seeds[-1]}); "
          f"val: {len(val_frames)} frames")

    model = CenterNet(net_cfg).to(memory_format=torch.channels_last)
    model.train()
    steps_per_epoch = (len(frames) + args.batch_size - 1) // args.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    total_steps = args.epochs * steps_per_epoch
    budget_s = args.time_budget_min * 60.0

    def lr_at(progress: float) -> float:
        """Linear warm-up (5 %) then cosine decay to 1 % of the peak."""
        if progress < WARMUP:
            return args.lr * (0.1 + 0.9 * progress / WARMUP)
        q = min(1.0, (progress - WARMUP) / (1.0 - WARMUP))
        return args.lr * (0.01 + 0.99 * 0.5 * (1.0 + np.cos(np.pi * q)))
    run_dir = repo_root() / "runs" / "detector" / args.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "log.csv"
    t_start = time.time()
    with log_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "step", "train_loss", "train_hm", "train_reg", "val_loss", "lr", "elapsed_s"])
        step = 0
        weights = sampling_weights(frames, args.balance)
        if weights is not None:
            print(f"class-balanced sampling: {int((weights > weights.min()).sum())} of {len(frames)} frames "
                  f"hold a rare class, drawn {1 + args.balance:g}x as often")
        for epoch in range(args.epochs):
            order = (rng.permutation(len(frames)) if weights is None
                     else rng.choice(len(frames), size=len(frames), p=weights))
            sums = np.zeros(3)
            n_ep = 0
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="step")
            for s in bar:
                idx = order[s * args.batch_size:(s + 1) * args.batch_size]
                batch = [sample_tensors(frames[i], grid, dec, out_size, rng) for i in idx]
                bev, hm, reg, mask = (torch.from_numpy(np.stack(x)) for x in zip(*batch, strict=True))
                bev = bev.contiguous(memory_format=torch.channels_last)
                # The schedule runs on max(step share, wall-clock share of the budget), so a slow
                # (shared) machine still anneals the learning rate before the time budget ends.
                progress = max(step / total_steps, (time.time() - t_start) / budget_s)
                if progress >= 1.0:
                    break
                for g in opt.param_groups:
                    g["lr"] = lr_at(progress)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    phm, preg = model(bev)
                l_hm = focal_loss(phm.float(), hm)
                l_reg = reg_loss(preg.float(), reg, mask)
                loss = l_hm + REG_WEIGHT * l_reg
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
                step += 1
                n_ep += 1
                sums += (loss.item(), l_hm.item(), l_reg.item())
                bar.set_postfix(loss=f"{sums[0] / n_ep:.3f}", hm=f"{sums[1] / n_ep:.3f}", reg=f"{sums[2] / n_ep:.3f}")
            val = evaluate_loss(model, val_frames, grid, dec, out_size, bf16) if val_frames else float("nan")
            elapsed = time.time() - t_start
            avg = sums / max(1, n_ep)
            writer.writerow([epoch + 1, step, f"{avg[0]:.5f}", f"{avg[1]:.5f}", f"{avg[2]:.5f}", f"{val:.5f}",
                             f"{opt.param_groups[0]['lr']:.6f}", f"{elapsed:.1f}"])
            fh.flush()
            print(f"epoch {epoch + 1}: train {avg[0]:.4f} (hm {avg[1]:.4f}, reg {avg[2]:.4f}) val {val:.4f} "
                  f"[{elapsed / 60:.1f} min]")
            info = {"epochs_done": epoch + 1, "train_frames": len(frames), "train_seeds": seeds,
                    "train_episodes": len(seeds), "seed": args.seed, "elapsed_s": round(elapsed, 1),
                    "command": "python -m training.detector " + " ".join(argv if argv is not None else sys.argv[1:])}
            save_artifacts(model, run_dir / f"epoch{epoch + 1:02d}", grid, dec, info)
            if progress >= 1.0 and epoch + 1 < args.epochs:
                print(f"time budget {args.time_budget_min} min used up in epoch {epoch + 1}; stopping")
                break
    save_artifacts(model, run_dir / "final", grid, dec, info)
    print(f"trained in {(time.time() - t_start) / 60:.1f} min; artifacts in {run_dir / 'final'}; log {log_path}")
    if args.ship:
        dst = default_model_dir()
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("detector.pt", "detector.json"):
            shutil.copy2(run_dir / "final" / name, dst / name)
        print(f"shipped to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
