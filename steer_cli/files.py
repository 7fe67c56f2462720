"""What steer knows of a file's content: its sha256 (checked against a
`.verified` marker steer wrote beside a model it fetched), and values worked
out once per content stamp (size, mtime) and kept in STEER_HOME."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steer_cli.errors import SteerError
from steer_cli.registry import steer_home

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
_BLOCK = 4 * 1024 * 1024


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def is_verified(path: Path, sha256: str | None) -> bool:
    marker = _marker(path)
    if not path.is_file() or not marker.is_file():
        return False
    recorded = marker.read_text().split()
    return recorded[:2] == _stamp(path).split() and (sha256 is None or recorded[2:3] == [sha256])


def verify(path: Path, sha256: str | None, size: int | None = None, progress: Progress | None = None) -> str:
    """Hash the file, refuse a mismatch, and leave a marker on success."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise SteerError(f"{path.name}: size {actual_size} bytes, expected {size} (truncated or wrong file)", "remove it and pull again")
    digest = sha256_file(path, progress)
    if sha256 is not None and digest != sha256:
        raise SteerError(f"{path.name}: sha256 {digest[:12]}… does not match the expected {sha256[:12]}…", "the file is corrupted; pull it again")
    _marker(path).write_text(f"{_stamp(path)} {digest}\n")
    return digest


def content_sha256(path: Path) -> str:
    """The file's sha256, hashed once per (size, mtime): from its `.verified`
    marker when steer wrote one, else from a small cache in STEER_HOME (never
    a file beside the user's own model)."""
    stamp = _stamp(path)
    marker = _marker(path)
    if marker.is_file():
        recorded = marker.read_text().split()
        if recorded[:2] == stamp.split() and len(recorded) > 2:
            return recorded[2]
    return remembered("hashes", path, sha256_file)


def remembered(kind: str, path: Path, compute: Callable[[Path], Any]) -> Any:
    """`compute(path)`, worked out once per file content stamp (size, mtime)
    and kept in STEER_HOME/<kind>.json: a file's sha256, its parameter count.
    Lanes of --parallel may ask at once: one thread at a time updates the file."""
    cache = steer_home() / f"{kind}.json"
    with _remembering:
        try:
            known = json.loads(cache.read_text()) if cache.is_file() else {}
        except (OSError, ValueError):
            known = {}
        key = f"{path.resolve()} {_stamp(path)}"
        if key not in known:
            known[key] = compute(path)
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, cache)
        return known[key]


_remembering = threading.RLock()
