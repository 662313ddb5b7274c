"""Export never changes the shipped models: artifacts are written to a staging folder, compared
with ``models/`` byte for byte, and a difference is explained (graph structure, initializers,
producer) so that a person decides whether to ship it.

A staged artifact that reproduces the shipped file is reported as such (its manifest entry
stays valid); one that differs, or is new, gets an entry in the staging folder's own
``manifest.yaml`` (same format as ``models/manifest.yaml``: sha256, the exact command, data).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tps_inference.manifest import Manifest, add_entry, sha256_file

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


@dataclass
class Artifact:
    """One exported file.

    Attributes:
        name: manifest name (``detector_int8``, ``tokenizer_fp32``, ``detector_trt_int8_calib``).
        model: the model it belongs to (``detector``, ``tokenizer``).
        fmt, precision: its cell of the export table.
        path: the staged file.
        shipped: the file in ``models/`` it would replace (None for artifacts that are never
            shipped, e.g. TensorRT engines, which are machine-specific).
        data: seeds/splits it was made from (manifest ``data``).
        status: reproduced | differs | new | machine-specific (set by :func:`compare`).
        explanation: why it differs (set by :func:`compare`).
    """

    name: str
    model: str
    fmt: str
    precision: str
    path: Path
    shipped: Path | None
    data: str = ""
    status: str = ""
    explanation: str = ""
    sha256: str = ""
    metrics: dict = field(default_factory=dict)


def command_line() -> str:
    """The exact command that is running (for ``made_by``)."""
    return "python -m export " + shlex.join(sys.argv[1:])


def compare(art: Artifact) -> Artifact:
    """Set ``status``/``explanation``/``sha256`` of a staged artifact against the shipped file."""
    art.sha256 = sha256_file(art.path)
    if art.shipped is None:
        art.status, art.explanation = "machine-specific", "built for this machine's GPU/TensorRT; never shipped"
        return art
    if not art.shipped.exists():
        art.status, art.explanation = "new", f"{art.shipped.relative_to(REPO)} does not exist yet"
        return art
    shipped_sha = sha256_file(art.shipped)
    if shipped_sha == art.sha256:
        art.status = "reproduced"
        art.explanation = f"byte-identical to {art.shipped.relative_to(REPO)} (sha256 {art.sha256[:12]}...)"
        return art
    art.status = "differs"
    art.explanation = explain_onnx_difference(art.path, art.shipped) if art.path.suffix == ".onnx" else \
        f"sha256 {art.sha256[:12]}... vs shipped {shipped_sha[:12]}..."
    if art.path.suffix == ".onnx" and onnx_numerically_equal(art.path, art.shipped):
        # another CPU folds the same weights with other float rounding: the same model, other bytes
        art.status = "reproduced-numerically"
        art.explanation += (f"; every initializer within {NUMERIC_ATOL:g} of the shipped one: the same model, "
                            f"rounded differently by this CPU's constant folding (the shipped file stays)")
    return art


NUMERIC_ATOL = 1e-6   # float32 rounding of folded weights (batch norm into conv) on another CPU


def onnx_numerically_equal(staged: Path, shipped: Path, atol: float = NUMERIC_ATOL) -> bool:
    """Same graph (op sequence), same initializer names, shapes and dtypes, and every initializer
    value within ``atol`` of the shipped one."""
    import onnx
    from onnx import numpy_helper

    a, b = onnx.load(str(staged)), onnx.load(str(shipped))
    if [n.op_type for n in a.graph.node] != [n.op_type for n in b.graph.node]:
        return False
    init_a = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    init_b = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    if set(init_a) != set(init_b):
        return False
    for name, x in init_a.items():
        y = init_b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if not np.allclose(x.astype(np.float64), y.astype(np.float64), rtol=0.0, atol=atol):
            return False
    return True


def explain_onnx_difference(staged: Path, shipped: Path) -> str:
    """What differs between two ONNX files: producer, opset, graph structure, initializer values."""
    import onnx
    from onnx import numpy_helper

    a, b = onnx.load(str(staged)), onnx.load(str(shipped))
    parts = []
    if (a.producer_name, a.producer_version) != (b.producer_name, b.producer_version):
        parts.append(f"producer {a.producer_name} {a.producer_version} vs shipped {b.producer_name} "
                     f"{b.producer_version}")
    if [(o.domain, o.version) for o in a.opset_import] != [(o.domain, o.version) for o in b.opset_import]:
        parts.append("opsets differ")
    ops_a = [n.op_type for n in a.graph.node]
    ops_b = [n.op_type for n in b.graph.node]
    if ops_a != ops_b:
        parts.append(f"graph structure differs ({len(ops_a)} vs {len(ops_b)} nodes)")
    else:
        parts.append(f"same graph structure ({len(ops_a)} nodes)")
    init_a = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    init_b = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    common = sorted(set(init_a) & set(init_b))
    differ = [n for n in common if init_a[n].shape != init_b[n].shape or not np.array_equal(init_a[n], init_b[n])]
    only = len(set(init_a) ^ set(init_b))
    if differ:
        scales = [n for n in differ if "scale" in n or "zero_point" in n]
        worst = max((float(np.max(np.abs(init_a[n].astype(np.float64) - init_b[n].astype(np.float64))))
                     for n in differ if init_a[n].shape == init_b[n].shape), default=float("nan"))
        parts.append(f"{len(differ)} of {len(common)} initializers differ ({len(scales)} of them quantisation "
                     f"scales/zero points; max |difference| {worst:.3g})")
        if scales and len(scales) == len(differ):
            parts.append("only the quantisation parameters differ: the calibration saw other frames or another "
                         "onnxruntime computed them (data/sim regenerated since the shipped export, or a "
                         "different onnxruntime version)")
    else:
        parts.append(f"all {len(common)} common initializers equal")
    if only:
        parts.append(f"{only} initializer name(s) in only one of the two")
    if not differ and ops_a == ops_b and not only:
        parts.append("the bytes differ in metadata or serialisation order only")
    return "; ".join(parts)


def write_staging_manifest(stage: Path, artifacts: list[Artifact]) -> Path | None:
    """Entries for the staged artifacts that differ from models/ or are new, in
    ``<stage>/manifest.yaml`` (paths relative to ``stage``). None if there are none."""
    todo = [a for a in artifacts if a.status in ("differs", "new")]
    if not todo:
        return None
    path = stage / "manifest.yaml"
    path.write_text("# Staged export (python -m export all): NOT shipped. To ship one, copy it into models/ and\n"
                    "# register it: python -m tps_inference.manifest add NAME models/FILE --made-by ... --replace\n"
                    "version: 1\nmodels:\n")
    for a in todo:
        notes = f"{a.fmt}/{a.precision}; {a.status}: {a.explanation}"
        add_entry(path, a.name, a.path, made_by=command_line(), data=a.data or "-", metrics=a.metrics,
                  notes=notes[:900])
    Manifest.load(path)  # validates what was written
    return path


def shipped_entry_check(artifacts: list[Artifact], manifest: Manifest) -> list[str]:
    """For reproduced artifacts: their shipped manifest entry names the same sha256."""
    problems = []
    for a in artifacts:
        if a.status != "reproduced":
            continue
        entry = manifest.find(a.shipped)
        if entry is None:
            problems.append(f"{a.shipped.relative_to(REPO)} is not listed in models/manifest.yaml")
        elif entry.sha256 != a.sha256:
            problems.append(f"models/manifest.yaml '{entry.name}' lists sha256 {entry.sha256[:12]}... but the file "
                            f"is {a.sha256[:12]}...")
    return problems
