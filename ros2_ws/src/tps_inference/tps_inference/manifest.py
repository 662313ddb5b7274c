"""Artifact trust: ``models/manifest.yaml`` lists every model file the stack may load.

Format (documented at the top of ``models/manifest.yaml`` too)::

    version: 1
    models:
      detector_int8:                      # model name (what nodes and Engine.from_manifest ask for)
        file: detector/detector_int8.onnx # path relative to the manifest's folder (models/)
        sha256: 3f1c...                   # 64 hex digits of the file's sha256
        made_by: ".venv/bin/python -m export.detector --int8"   # the exact command
        data: "train seeds 0..999, calibration VAL 1000..1019"  # seeds/splits (string or mapping)
        metrics: {val_map: 0.61, parity_cosine: 0.998}          # what it scores (mapping, may be {})
        notes: "static QDQ INT8"                                # free text (optional)
        tensorrt:                          # optional: how TensorRT builds this model instead
          source: detector_fp32            #   manifest name of the ONNX TensorRT builds from
          precision: int8                  #   fp32 | fp16 | int8
          calibration: detector_trt_calib  #   INT8 of an FP32 graph: manifest name of the calibration cache

The runtime computes the file's sha256 before loading it; a mismatch, a missing file, a malformed
manifest or an unlisted model raises an :class:`~tps_inference.errors.ArtifactError` subclass
naming the file. Command line::

    python -m tps_inference.manifest verify [--manifest models/manifest.yaml]
    python -m tps_inference.manifest add NAME FILE --made-by CMD --data TEXT [--metric k=v ...] [--notes TEXT]
    python -m tps_inference.manifest sha256 FILE
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ArtifactChecksumError, ArtifactMissingError, ManifestError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = ("file", "sha256", "made_by", "data", "metrics")
_OPTIONAL = ("notes", "tensorrt")
_TENSORRT_KEYS = ("source", "precision", "calibration")
_TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")
_CHUNK_BYTES = 1 << 20


def repo_root() -> Path:
    """The repository root (``TPS_ROOT`` overrides)."""
    env = os.environ.get("TPS_ROOT")
    if env:
        return Path(env)
    # ros2_ws/src/tps_inference/tps_inference/manifest.py -> repository root
    return Path(__file__).resolve().parents[4]


def default_manifest_path() -> Path:
    """``models/manifest.yaml`` of the repository (``TPS_MANIFEST`` overrides)."""
    env = os.environ.get("TPS_MANIFEST")
    return Path(env) if env else repo_root() / "models" / "manifest.yaml"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Raises:
        ArtifactMissingError: the file does not exist (the message names it).
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK_BYTES), b""):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise ArtifactMissingError(f"file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ArtifactMissingError(f"{path} is a directory, not a file") from exc
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, *, what: str = "model file") -> Path:
    """Check ``path`` against an expected sha256; return the resolved path.

    Raises:
        ArtifactMissingError: the file does not exist.
        ArtifactChecksumError: the digest differs (message names the file, both digests).
        ManifestError: ``expected`` is not 64 hex digits.
    """
    path = Path(path)
    expected = str(expected).strip().lower()
    if not _SHA256.match(expected):
        raise ManifestError(f"expected sha256 for {path} is not 64 hex digits: {expected!r}")
    if not path.is_file():
        raise ArtifactMissingError(f"{what} not found: {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactChecksumError(
            f"{what} {path} failed its sha256 check: expected {expected}, got {actual} "
            "(the file was modified or replaced; re-export it or update models/manifest.yaml with the command that made it)"
        )
    return path.resolve()


@dataclass(frozen=True)
class ManifestEntry:
    """One model of the manifest. ``path`` is ``file`` resolved against the manifest's folder."""

    name: str
    file: str
    sha256: str
    made_by: str
    data: Any
    metrics: Mapping[str, Any]
    notes: str = ""
    path: Path = field(default=Path(), compare=False)
    tensorrt: Mapping[str, str] | None = None  # {source, precision[, calibration]} or None

    def raw(self) -> dict:
        """The entry as written in the manifest."""
        out = {k: getattr(self, k) for k in _REQUIRED}
        if self.notes:
            out["notes"] = self.notes
        if self.tensorrt:
            out["tensorrt"] = dict(self.tensorrt)
        return out

    def verify(self) -> Path:
        """Verify the file's sha256; return its resolved path."""
        return verify_sha256(self.path, self.sha256, what=f"model '{self.name}' file")


class Manifest:
    """A parsed, validated ``models/manifest.yaml``."""

    def __init__(self, path: Path, entries: dict[str, ManifestEntry]):
        self.path = path
        self.root = path.parent
        self.entries = entries

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Manifest:
        """Read and validate a manifest (default :func:`default_manifest_path`).

        Raises:
            ManifestError: missing file, invalid YAML, or an entry lacking a required key /
                with a malformed sha256 (the message names the manifest, the model and the key).
        """
        path = Path(path) if path is not None else default_manifest_path()
        try:
            doc = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise ManifestError(f"model manifest not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ManifestError(f"model manifest {path} is not valid YAML: {exc}") from exc
        if not isinstance(doc, dict) or "models" not in doc:
            raise ManifestError(f"model manifest {path} has no top-level 'models:' mapping")
        models = doc["models"] or {}
        if not isinstance(models, dict):
            raise ManifestError(f"model manifest {path}: 'models' must be a mapping name -> entry")
        entries = {}
        for name, raw in models.items():
            entries[str(name)] = cls._entry(path, str(name), raw)
        for name, entry in entries.items():
            if entry.tensorrt and entry.tensorrt["source"] not in entries:
                raise ManifestError(f"model manifest {path}, model '{name}': tensorrt.source "
                                    f"'{entry.tensorrt['source']}' is not a listed model")
        return cls(path, entries)

    @staticmethod
    def _entry(path: Path, name: str, raw: Any) -> ManifestEntry:
        where = f"model manifest {path}, model '{name}'"
        if not isinstance(raw, dict):
            raise ManifestError(f"{where}: entry must be a mapping with keys {list(_REQUIRED)}")
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise ManifestError(f"{where}: missing key(s) {missing}")
        unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise ManifestError(f"{where}: unknown key(s) {unknown}; allowed {list(_REQUIRED + _OPTIONAL)}")
        sha = str(raw["sha256"]).strip().lower()
        if not _SHA256.match(sha):
            raise ManifestError(f"{where}: sha256 must be 64 hex digits, got {raw['sha256']!r}")
        if not isinstance(raw["file"], str) or not raw["file"] or Path(raw["file"]).is_absolute():
            raise ManifestError(f"{where}: file must be a path relative to {path.parent}, got {raw['file']!r}")
        if not isinstance(raw["made_by"], str) or not raw["made_by"].strip():
            raise ManifestError(f"{where}: made_by must be the exact command that made the file")
        if not isinstance(raw["metrics"], dict):
            raise ManifestError(f"{where}: metrics must be a mapping (may be empty), got {raw['metrics']!r}")
        trt = raw.get("tensorrt")
        if trt is not None:
            if not isinstance(trt, dict) or not isinstance(trt.get("source"), str) \
                    or trt.get("precision") not in _TENSORRT_PRECISIONS or set(trt) - set(_TENSORRT_KEYS) \
                    or not isinstance(trt.get("calibration", ""), str):
                raise ManifestError(f"{where}: tensorrt must be a mapping with source (a model name), precision "
                                    f"({' | '.join(_TENSORRT_PRECISIONS)}) and optionally calibration (a model "
                                    f"name), got {trt!r}")
            trt = {k: str(v) for k, v in trt.items()}
        return ManifestEntry(name=name, file=raw["file"], sha256=sha, made_by=raw["made_by"], data=raw["data"],
                             metrics=dict(raw["metrics"]), notes=str(raw.get("notes") or ""),
                             path=(path.parent / raw["file"]).resolve(), tensorrt=trt)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> ManifestEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ManifestError(
                f"model '{name}' is not listed in {self.path}; listed: {sorted(self.entries)}"
            ) from None

    def find(self, path: str | os.PathLike) -> ManifestEntry | None:
        """The entry whose file is ``path`` (compared after resolving), or None."""
        target = Path(path).resolve()
        for entry in self.entries.values():
            if entry.path == target:
                return entry
        return None

    def verify(self, name: str) -> Path:
        """Verify model ``name``'s sha256; return its resolved path."""
        return self[name].verify()

    def verify_all(self) -> dict[str, str]:
        """{name: "ok" or the error message} for every model (never raises for a bad file)."""
        report = {}
        for name, entry in self.entries.items():
            try:
                entry.verify()
                report[name] = "ok"
            except (ArtifactMissingError, ArtifactChecksumError) as exc:
                report[name] = str(exc)
        return report


def trusted_path(model_path: str | os.PathLike, sha256: str | None = None,
                 manifest: Manifest | str | os.PathLike | None = None, *, what: str = "model file") -> Path:
    """Verify a model file before loading: against ``sha256`` if given, else its manifest entry.

    Raises:
        ArtifactMissingError, ArtifactChecksumError: the file is missing or was modified.
        ManifestError: no ``sha256`` given and the file is not listed in the manifest.
    """
    path = Path(model_path)
    if sha256 is not None:
        return verify_sha256(path, sha256, what=what)
    if not path.exists():
        raise ArtifactMissingError(f"{what} not found: {path}")
    man = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    entry = man.find(path)
    if entry is None:
        raise ManifestError(
            f"model file {path} is not listed in {man.path} and no sha256 was given; add it with "
            "`python -m tps_inference.manifest add NAME FILE --made-by CMD --data TEXT` (or pass sha256=)"
        )
    return entry.verify()


def render_entry(name: str, entry: Mapping[str, Any]) -> str:
    """YAML text of one entry, indented to sit under ``models:``."""
    body = yaml.safe_dump({name: dict(entry)}, sort_keys=False, default_flow_style=False, width=100)
    return "".join("  " + line + "\n" for line in body.splitlines())


def add_entry(manifest_path: str | os.PathLike, name: str, file: str | os.PathLike, made_by: str, data: Any,
              metrics: Mapping[str, Any] | None = None, notes: str = "", replace: bool = False,
              tensorrt: Mapping[str, str] | None = None) -> ManifestEntry:
    """Add (or with ``replace`` update) a model entry, computing the file's sha256.

    The manifest is rewritten with its header comment kept: everything up to and including the
    ``models:`` line stays as it is and the entries below it are re-rendered.

    Raises:
        ManifestError: ``name`` already listed (without ``replace``) or the file is outside the
            manifest's folder.
        ArtifactMissingError: the file does not exist.
    """
    manifest_path = Path(manifest_path)
    man = Manifest.load(manifest_path)
    if name in man and not replace:
        raise ManifestError(f"model '{name}' is already listed in {manifest_path} (use --replace)")
    file_path = Path(file).resolve()
    try:
        rel = file_path.relative_to(man.root.resolve())
    except ValueError as exc:
        raise ManifestError(f"model file {file_path} is outside {man.root}; models live under it") from exc
    raw = {"file": rel.as_posix(), "sha256": sha256_file(file_path), "made_by": made_by, "data": data,
           "metrics": dict(metrics or {})}
    if notes:
        raw["notes"] = notes
    if tensorrt is None and name in man and man[name].tensorrt:
        tensorrt = man[name].tensorrt  # a re-registered file keeps its TensorRT recipe
    if tensorrt:
        raw["tensorrt"] = dict(tensorrt)
    text = manifest_path.read_text()
    match = re.search(r"^models:.*$", text, flags=re.MULTILINE)
    if match is None:
        raise ManifestError(f"model manifest {manifest_path} has no 'models:' line")
    head = text[: match.start()] + "models:\n"
    entries = {n: e.raw() for n, e in man.entries.items() if n != name}
    entries[name] = raw
    body = "".join(render_entry(n, e) for n, e in entries.items())
    manifest_path.write_text(head + body)
    return Manifest.load(manifest_path)[name]


def _parse_metric(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"metric must be key=value, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    """``python -m tps_inference.manifest {verify,add,sha256}``."""
    ap = argparse.ArgumentParser(prog="python -m tps_inference.manifest", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=None, help="default: models/manifest.yaml")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("verify", help="check every listed file's sha256")
    add = sub.add_parser("add", help="add a model (sha256 computed)")
    add.add_argument("name")
    add.add_argument("file", type=Path)
    add.add_argument("--made-by", required=True, help="the exact command that produced the file")
    add.add_argument("--data", required=True, help="seeds / splits used")
    add.add_argument("--metric", action="append", type=_parse_metric, default=[], help="key=value (repeat)")
    add.add_argument("--notes", default="")
    add.add_argument("--replace", action="store_true")
    sha = sub.add_parser("sha256", help="print a file's sha256")
    sha.add_argument("file", type=Path)
    args = ap.parse_args(argv)
    path = args.manifest or default_manifest_path()
    try:
        if args.cmd == "sha256":
            print(sha256_file(args.file))
            return 0
        if args.cmd == "add":
            entry = add_entry(path, args.name, args.file, args.made_by, args.data, dict(args.metric), args.notes,
                              args.replace)
            print(f"added '{entry.name}': {entry.file} sha256 {entry.sha256}")
            return 0
        report = Manifest.load(path).verify_all()
        for name, status in report.items():
            print(f"{name}: {status}")
        print(f"{sum(v == 'ok' for v in report.values())}/{len(report)} model files verified ({path})")
        return 0 if all(v == "ok" for v in report.values()) else 1
    except (ManifestError, ArtifactMissingError, ArtifactChecksumError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
