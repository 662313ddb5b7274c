"""Stand-in node executables for the runner's supervision tests: small shell scripts written into a
temporary bin folder (the tests point a graph's nodes at them by path)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_bin_dir(tmp_path: Path, scripts: Mapping[str, str]) -> Path:
    """``tmp_path/bin`` with one executable file per ``scripts`` entry (name -> shell text)."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, text in scripts.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    return d
