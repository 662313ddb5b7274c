"""Content-addressed, process-safe file cache for generated SUMO inputs (networks, routes).

Files are keyed by a hash of everything that generates them and written under a temporary name
and renamed, so two processes that build the same network at once never see a half-written
file (the last rename wins; both contents are identical).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "TPS_SIM_CACHE_DIR"


def cache_root() -> Path:
    """<repo>/data/cache (git-ignored), or $TPS_SIM_CACHE_DIR, or ~/.cache/tps_sim."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "ros2_ws").is_dir() and (parent / ".gitignore").is_file():
            return parent / "data" / "cache"
    return Path.home() / ".cache" / "tps_sim"


def content_key(*parts: str) -> str:
    """Short sha256 hex digest of the given strings."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def cached_file(kind: str, key: str, suffix: str, text: str) -> Path:
    """Path of a cached text file ``kind/key+suffix``, written atomically if absent."""
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}{suffix}"
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def cached_dir(kind: str, key: str, build: Callable[[Path], None], marker: str) -> Path:
    """A cached directory ``kind/key`` built by ``build(tmpdir)``; ``marker`` is a file the
    build must create (its presence means the directory is complete)."""
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / key
    if (final / marker).is_file():
        return final
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{key}."))
    try:
        build(tmp)
        if not (tmp / marker).is_file():
            raise RuntimeError(f"cache build of {kind}/{key} did not create {marker}")
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished first (final exists and is non-empty): use theirs.
            if not (final / marker).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
