"""models/manifest.yaml: format validation, sha256 verification, add/verify command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from inference_models import MANIFEST_HEADER
from tps_inference.errors import ArtifactChecksumError, ArtifactMissingError, ManifestError
from tps_inference.manifest import (
    Manifest,
    add_entry,
    default_manifest_path,
    main,
    sha256_file,
    trusted_path,
    verify_sha256,
)

GOOD_SHA = "a" * 64


def write_manifest(tmp_path: Path, models: dict | None, header: str = "version: 1\n") -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(header + yaml.safe_dump({"models": models}))
    return path


def entry(**overrides) -> dict:
    base = {"file": "m.onnx", "sha256": GOOD_SHA, "made_by": "python make.py", "data": "seeds 0..9", "metrics": {}}
    base.update(overrides)
    return base


def test_manifest_lists_models_and_verifies_them(models_dir):
    man = Manifest.load(models_dir / "manifest.yaml")
    assert sorted(man.entries) == ["dense_relu", "two_inputs"]
    two = man["two_inputs"]
    assert (two.file, two.metrics, two.notes) == ("toy/two_inputs.onnx", {"exact": True}, "elementwise")
    assert two.path == (models_dir / "toy" / "two_inputs.onnx").resolve()
    assert two.sha256 == sha256_file(two.path)
    assert man.verify("dense_relu") == (models_dir / "toy" / "dense_relu.onnx").resolve()
    assert man.find(models_dir / "toy" / ".." / "toy" / "two_inputs.onnx") is two
    assert man.verify_all() == {"dense_relu": "ok", "two_inputs": "ok"}
    assert (models_dir / "manifest.yaml").read_text().startswith(MANIFEST_HEADER)  # header kept by add_entry


@pytest.mark.parametrize("models, message", [
    ({"m": {k: v for k, v in entry().items() if k != "made_by"}}, r"model 'm': missing key\(s\) \['made_by'\]"),
    ({"m": entry(sha256="xyz")}, r"model 'm': sha256 must be 64 hex digits, got 'xyz'"),
    ({"m": entry(file="/abs/m.onnx")}, r"model 'm': file must be a path relative to"),
    ({"m": entry(metrics=[1, 2])}, r"model 'm': metrics must be a mapping"),
    ({"m": entry(made_by="")}, r"model 'm': made_by must be the exact command"),
    ({"m": entry(owner="me")}, r"model 'm': unknown key\(s\) \['owner'\]"),
    ({"m": "m.onnx"}, r"model 'm': entry must be a mapping"),
])
def test_malformed_manifest_entries_are_named(tmp_path, models, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.load(write_manifest(tmp_path, models))


def test_malformed_manifest_files(tmp_path):
    with pytest.raises(ManifestError, match="model manifest not found"):
        Manifest.load(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(ManifestError, match="is not valid YAML"):
        Manifest.load(bad)
    bad.write_text("version: 1\n")
    with pytest.raises(ManifestError, match="no top-level 'models:' mapping"):
        Manifest.load(bad)
    assert Manifest.load(write_manifest(tmp_path, None)).entries == {}


def test_verify_sha256_names_the_file(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\x00" * 1000)
    digest = sha256_file(f)
    assert verify_sha256(f, digest.upper()) == f.resolve()
    f.write_bytes(b"\x00" * 999 + b"\x01")
    with pytest.raises(ArtifactChecksumError, match=rf"model file {f} failed its sha256 check: expected {digest}"):
        verify_sha256(f, digest)
    with pytest.raises(ArtifactMissingError, match=f"model file not found: {tmp_path / 'gone.bin'}"):
        verify_sha256(tmp_path / "gone.bin", digest)
    with pytest.raises(ManifestError, match="is not 64 hex digits"):
        verify_sha256(f, "123")
    with pytest.raises(ArtifactMissingError, match="not found"):
        trusted_path(tmp_path / "gone.bin", manifest=write_manifest(tmp_path, None))


def test_add_entry_refuses_duplicates_and_outside_files(models_dir, tmp_path):
    manifest = models_dir / "manifest.yaml"
    path = models_dir / "toy" / "dense_relu.onnx"
    with pytest.raises(ManifestError, match="'dense_relu' is already listed"):
        add_entry(manifest, "dense_relu", path, made_by="x", data="y")
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"1")
    with pytest.raises(ManifestError, match="is outside"):
        add_entry(manifest, "outside", outside, made_by="x", data="y")
    updated = add_entry(manifest, "dense_relu", path, made_by="new command", data="y", metrics={"auc": 0.5},
                        replace=True)
    assert updated.made_by == "new command" and Manifest.load(manifest)["two_inputs"].notes == "elementwise"


def test_command_line_verify_add_and_sha256(models_dir, capsys):
    manifest = str(models_dir / "manifest.yaml")
    assert main(["--manifest", manifest, "verify"]) == 0
    assert "2/2 model files verified" in capsys.readouterr().out
    extra = models_dir / "toy" / "extra.bin"
    extra.write_bytes(b"extra")
    assert main(["--manifest", manifest, "add", "extra", str(extra), "--made-by", "echo extra",
                 "--data", "none", "--metric", "score=0.5"]) == 0
    assert Manifest.load(manifest)["extra"].metrics == {"score": 0.5}
    capsys.readouterr()
    assert main(["sha256", str(extra)]) == 0
    assert capsys.readouterr().out.strip() == sha256_file(extra)
    extra.write_bytes(b"Extra")
    assert main(["--manifest", manifest, "verify"]) == 1
    assert f"{extra.resolve()} failed its sha256 check" in capsys.readouterr().out


def test_repository_manifest_is_valid_and_every_listed_file_matches():
    """The shipped models/manifest.yaml parses, and each model it lists is present and untampered."""
    man = Manifest.load(default_manifest_path())
    assert man.path.name == "manifest.yaml" and man.root.name == "models"
    bad = {name: status for name, status in man.verify_all().items() if status != "ok"}
    assert not bad, bad
