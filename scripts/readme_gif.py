"""Make the README's BEV animation (docs/images/demo_cut_in.gif) from a `make demo` run.

    .venv/bin/python scripts/readme_gif.py runs/demo/demo-<UTC stamp>/bev/cut_in-s9000-stack.gif

Keeps every --every-th frame (each shown that much longer, so the animation keeps its pace),
scales to --width pixels and re-quantises to --colors colours until the file is under --max-kb.
Pillow only; the frames themselves are the demo's (tps_eval.report.episode_bev).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageSequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "images" / "demo_cut_in.gif"


def shrink(src: Path, out: Path, every: int, width: int, colors: int) -> int:
    """Write the reduced GIF; returns its size in bytes."""
    with Image.open(src) as im:
        frames, durations = [], []
        for k, frame in enumerate(ImageSequence.Iterator(im)):
            if k % every:
                continue
            rgb = frame.convert("RGB")
            h = round(rgb.height * width / rgb.width)
            rgb = rgb.resize((width, h), Image.Resampling.LANCZOS)
            frames.append(rgb.quantize(colors=colors, method=Image.Quantize.MEDIANCUT))
            durations.append(int(frame.info.get("duration", 200)) * every)
    if not frames:
        raise SystemExit(f"{src}: no frames")
    out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=True)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gif", type=Path, help="the demo's animation (bev/<episode>.gif of the run)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--every", type=int, default=1, help="keep every N-th frame (default 1)")
    ap.add_argument("--width", type=int, default=420, help="pixels (default 420)")
    ap.add_argument("--colors", type=int, default=48)
    ap.add_argument("--max-kb", type=int, default=1000, help="coarsen until under this (default 1000)")
    a = ap.parse_args(argv)
    every, width = a.every, a.width
    while True:
        size = shrink(a.gif, a.out, every, width, a.colors)
        print(f"{a.out}: {size / 1024:.0f} KiB (every {every}, width {width}, {a.colors} colours)")
        if size <= a.max_kb * 1024:
            return 0
        if every >= 4 and width <= 300:
            print(f"still over {a.max_kb} KiB", file=sys.stderr)
            return 1
        every, width = (every + 1, width) if every < 4 else (every, width - 60)


if __name__ == "__main__":
    sys.exit(main())
