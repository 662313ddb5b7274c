"""Join rosbag2 recordings end to end into one continuous bag (no ROS).

The simulator's episodes end at their route's end (a highway episode is ~55 s), but a latency
benchmark wants minutes of continuous input. ``concatenate`` writes the bags one after the other,
each shifted in time so that it starts ``gap_s`` after the previous one ended: every log time and
every ``builtin_interfaces/Time`` inside every message (header stamps, ``/clock``, the stamps of
``/tf`` transforms, ...) moves by the same offset, so the joined bag's stamps only go forward.

Each segment is its own drive: at a joint the ego jumps to the next recording's start, and the
latched map, route and instruction of the next recording are played again (the stack takes them as
an update). Consumers should treat a joint as a scene cut.

    python -m tps_eval.replay.concat out.mcap a.mcap b.mcap c.mcap [--gap-s 0.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from tps_eval.replay.bagio import BagError, ResultBagWriter, _is_latched, open_reader

TIME_TYPE = "builtin_interfaces__msg__Time"


def shift_times(msg, offset_ns: int) -> int:
    """Shift every ``builtin_interfaces/Time`` inside ``msg`` (in place) by ``offset_ns``; returns
    how many were shifted. A zero stamp moves too: the simulator's first frame is stamped 0, and
    left there it would go back in time at the joint."""
    count = 0
    if type(msg).__name__ == TIME_TYPE:
        total = int(msg.sec) * 1_000_000_000 + int(msg.nanosec) + offset_ns
        if total < 0:
            raise ValueError(f"shifted stamp {total} ns is negative")
        msg.sec, msg.nanosec = divmod(total, 1_000_000_000)
        return 1
    if not dataclasses.is_dataclass(msg):
        return 0
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, (list, tuple)):
            for item in value:
                count += shift_times(item, offset_ns)
        elif dataclasses.is_dataclass(value):
            count += shift_times(value, offset_ns)
        elif isinstance(value, np.ndarray) and value.dtype == object:
            for item in value:
                count += shift_times(item, offset_ns)
    return count


def concatenate(bags: list[str | Path], out: str | Path, gap_s: float = 0.1, compress: bool = True,
                progress=None) -> dict:
    """Write ``bags`` one after the other into the MCAP file ``out`` (module docstring).

    Returns:
        {"segments": [{"bag", "offset_s", "start_s", "end_s", "messages"}], "duration_s", "messages"}.

    Raises:
        BagError: an input bag is missing or empty; FileExistsError: ``out`` exists.
    """
    if not bags:
        raise BagError("concatenate: no input bag")
    if not gap_s > 0:
        raise ValueError(f"gap_s must be > 0, got {gap_s}")
    writer = ResultBagWriter(out, compress=compress)
    segments, t_end, total = [], None, 0
    try:
        for path in bags:
            with open_reader(path) as reader:
                if not reader.message_count:
                    raise BagError(f"bag {path}: no message")
                start, end = int(reader.start_time), int(reader.end_time)
                offset = 0 if t_end is None else t_end + int(gap_s * 1e9) - start
                latched = {c.topic: _is_latched(c) for c in reader.connections}
                n = 0
                for conn, t_ns, raw in reader.messages():
                    msg = reader.deserialize(raw, conn.msgtype)
                    shift_times(msg, offset)
                    data = bytes(writer.store.serialize_cdr(msg, conn.msgtype))
                    if not writer.write(conn.topic, conn.msgtype, data, int(t_ns) + offset,
                                        latched=latched[conn.topic]):
                        raise BagError(f"bag {path}: {conn.topic} ({conn.msgtype}) cannot be re-encoded")
                    n += 1
                    if progress is not None and n % 500 == 0:
                        progress(f"{Path(path).name}: {n}/{reader.message_count} messages")
                segments.append({"bag": str(path), "offset_s": offset / 1e9, "start_s": (start + offset) / 1e9,
                                 "end_s": (end + offset) / 1e9, "messages": n})
                t_end, total = end + offset, total + n
    except BaseException:
        writer.writer.close()
        raise
    writer.close()
    return {"segments": segments, "duration_s": (t_end - (segments[0]["start_s"] * 1e9)) / 1e9,
            "messages": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tps_eval.replay.concat", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the joined .mcap file (must not exist)")
    ap.add_argument("bags", nargs="+", help="input bags, in order")
    ap.add_argument("--gap-s", type=float, default=0.1, help="time between one bag's end and the next's start")
    ap.add_argument("--no-compress", action="store_true")
    args = ap.parse_args(argv)
    try:
        info = concatenate(args.bags, args.out, args.gap_s, compress=not args.no_compress,
                           progress=lambda s: print(s, file=sys.stderr, flush=True))
    except (BagError, ValueError, FileExistsError) as exc:
        print(f"concat: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {info['messages']} messages, {info['duration_s']:.1f} s, "
          f"{len(info['segments'])} segments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
