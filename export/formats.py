"""The export table (formats x precisions), what this machine can build, and argument validation.

Every model goes torch -> ONNX FP32 (the source of every other format) -> ONNX Runtime INT8 (CPU)
and TensorRT engines (GPU); torch-CUDA is the GPU path where TensorRT is absent. Validation runs
before any work and says what is missing (calibration data, the TensorRT package, a GPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("onnx", "onnxruntime", "tensorrt", "torch-cuda")
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("all", *FORMATS)

# (format, precision) -> what it is. A pair not listed is not offered (NOT_OFFERED says why).
OFFERED: dict[tuple[str, str], str] = {
    ("onnx", "fp32"): "ONNX opset 17, onnx.checker + strict shape inference; the source of every other format",
    ("onnxruntime", "fp32"): "ONNX Runtime CPU on the FP32 ONNX (what CI and CPU machines run)",
    ("onnxruntime", "int8"): "ONNX Runtime INT8 on the CPU (the model's recipe: static QDQ or dynamic)",
    ("tensorrt", "fp16"): "TensorRT 10 engine, FP16, built from the FP32 ONNX (timing cache kept)",
    ("tensorrt", "int8"): "TensorRT 10 engine, INT8 + FP16 fallback, entropy calibration cache on N TRAIN frames",
    ("torch-cuda", "fp32"): "torch eager on CUDA (a GPU without TensorRT)",
    ("torch-cuda", "fp16"): "torch eager on CUDA under FP16 autocast (a GPU without TensorRT)",
}
NOT_OFFERED: dict[tuple[str, str], str] = {
    ("onnx", "fp16"): "the shipped ONNX is FP32; reduced precision is the runtime's job",
    ("onnx", "int8"): "INT8 ONNX is the onnxruntime/int8 artifact",
    ("onnxruntime", "fp16"): "ONNX Runtime CPU has no FP16 kernels worth shipping",
    ("tensorrt", "fp32"): "not shipped: FP16 is the GPU baseline (the engine cache still builds FP32 on request)",
    ("torch-cuda", "int8"): "torch eager has no INT8 inference path used here",
}


@dataclass(frozen=True)
class Capabilities:
    """What this machine can build, each with the reason."""

    tensorrt: bool
    tensorrt_why: str
    cuda: bool
    cuda_why: str

    def can(self, fmt: str) -> tuple[bool, str]:
        if fmt == "tensorrt":
            ok = self.tensorrt and self.cuda
            return ok, "" if ok else f"TensorRT engines need the tensorrt package (>= 10) and an NVIDIA GPU: " \
                                     f"{'; '.join(w for w, o in ((self.tensorrt_why, self.tensorrt), (self.cuda_why, self.cuda)) if not o)}"
        if fmt == "torch-cuda":
            return self.cuda, "" if self.cuda else f"torch-CUDA needs an NVIDIA GPU: {self.cuda_why}"
        return True, ""


def probe_capabilities() -> Capabilities:
    """TensorRT and CUDA, as tps_inference sees them (never raises)."""
    from tps_inference.device import cuda_status, tensorrt_status

    trt_ok, trt_why = tensorrt_status()
    cuda_ok, cuda_why = cuda_status()
    return Capabilities(trt_ok, trt_why, cuda_ok, cuda_why)


@dataclass(frozen=True)
class Plan:
    """Validated choices: the cells to build and the rows skipped with their reasons."""

    cells: tuple[tuple[str, str], ...]             # (format, precision) to build
    skipped: dict[tuple[str, str], str]            # (format, precision) -> why not here
    notes: tuple[str, ...]


def plan(targets: Sequence[str], precisions: Sequence[str], caps: Capabilities, *, have_train: bool,
         have_val: bool, synthetic: bool, data_root: Path | None = None) -> tuple[Plan | None, list[str]]:
    """Validate the request up front.

    Returns:
        (plan, errors): errors (each naming what is missing) when the request cannot be done;
        an explicitly requested target this machine cannot build is an error, ``all`` skips it
        with the reason.
    """
    errors: list[str] = []
    bad = [t for t in targets if t not in TARGETS] + [p for p in precisions if p not in PRECISIONS]
    if bad:
        errors.append(f"unknown target/precision {bad}; targets {list(TARGETS)}, precisions {list(PRECISIONS)}")
        return None, errors
    explicit = "all" not in targets
    fmts = [f for f in FORMATS if not explicit or f in targets]
    if "onnx" not in fmts:
        fmts.insert(0, "onnx")  # every format is built from the ONNX
    cells, skipped, notes = [], {}, []
    for fmt in fmts:
        ok, why = caps.can(fmt)
        for prec in PRECISIONS:
            if fmt == "onnx" and prec != "fp32":
                continue
            if (fmt, prec) not in OFFERED:
                if prec in precisions and explicit:
                    notes.append(f"{fmt}/{prec} is not offered: {NOT_OFFERED[(fmt, prec)]}")
                continue
            if prec not in precisions and fmt != "onnx":
                continue
            if not ok:
                if explicit and fmt in targets:
                    errors.append(why)
                    break
                skipped[(fmt, prec)] = why
                continue
            cells.append((fmt, prec))
    where = f" under {data_root}" if data_root else " under data/sim"
    needs_calib = any(p == "int8" for _, p in cells)
    if needs_calib and not have_train and not synthetic:
        errors.append(f"INT8 needs calibration data: no TRAIN-split shards{where} (run `make dataset`), or pass "
                      "--synthetic for a smoke run (its artifacts are never to be shipped), or leave out "
                      "--precision int8")
    if not have_val and not synthetic:
        errors.append(f"the parity check needs VAL-split frames: no VAL shards{where} (run `make dataset`), or pass "
                      "--synthetic for a smoke run")
    return (None if errors else Plan(tuple(dict.fromkeys(cells)), skipped, tuple(dict.fromkeys(notes)))), errors


def table_markdown() -> str:
    """The formats x precisions table (README, ``python -m export formats``)."""
    head = "| format | " + " | ".join(PRECISIONS) + " |\n|---|" + "---|" * len(PRECISIONS) + "\n"
    rows = []
    for fmt in FORMATS:
        cells = [OFFERED.get((fmt, p)) or f"- ({NOT_OFFERED[(fmt, p)]})" for p in PRECISIONS]
        rows.append(f"| {fmt} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"
