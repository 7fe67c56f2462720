"""Getting GGUF files onto disk, verified: Hugging Face Hub, PyPI chunks, paths.

No half file is ever used: the hub client downloads to `.incomplete` and
renames; chunk assembly writes `<file>.partial` and renames after the sha256
matches. A verified file gets a `.verified` marker (size, mtime, sha256) so
later runs trust it without rehashing a gigabyte.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from steer_cli.errors import SteerError, UsageError
from steer_cli.files import Progress, _marker, _stamp, content_sha256, is_verified, remembered, sha256_file, verify  # noqa: F401 (fetch's API)
from steer_cli.output import Output
from steer_cli.registry import HfSource, ModelEntry, PypiSource, steer_home

_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Located:
    path: Path
    source: str  # path | pypi | hf


def cache_dir(override: Path | None = None) -> Path:
    return Path(override) if override else steer_home() / "models"


def hub_cache(override: Path | None = None) -> str | None:
    """None lets huggingface_hub honour HF_HOME / HF_HUB_CACHE itself."""
    return str(override / "hub") if override else None


# -- locating what is already here -------------------------------------------
def locate(name: str, entry: ModelEntry, cache: Path | None = None) -> Located | None:
    """A trusted local copy of the model, or None. Never touches the network."""
    found = on_disk(entry, cache)
    if found is None or found.source == "path":
        return found
    if found.source == "pypi":
        return found if is_verified(found.path, entry.sha256) else None
    hf = entry.sources.hf
    # The hub stores LFS files under blobs/<sha256>: a cheap, exact check.
    return found if hf is None or hf.sha256 is None or found.path.resolve().name == hf.sha256 else None


def on_disk(entry: ModelEntry, cache: Path | None = None) -> Located | None:
    """Where the model's file is, trusted or not (for `verify` and `rm`)."""
    if entry.sources.path:
        path = Path(entry.sources.path).expanduser()
        return Located(path, "path") if path.is_file() else None
    assembled = cache_dir(cache) / entry.file
    if assembled.is_file():
        return Located(assembled, "pypi")
    if entry.sources.hf is not None:
        found = _hub_cached(entry.sources.hf, cache)
        if found is not None:
            return Located(found, "hf")
    return None


def _hub_cached(hf: HfSource, cache: Path | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hf.repo, hf.file, cache_dir=hub_cache(cache), revision=hf.revision)
    return Path(found) if isinstance(found, str) else None


def require(name: str, entry: ModelEntry, cache: Path | None = None, assemble: bool = True) -> Path:
    """The model's file for loading. Chunk packages already installed are
    assembled on the spot (local, no network); otherwise say how to fetch."""
    found = locate(name, entry, cache)
    if found is not None:
        return found.path
    pypi = entry.sources.pypi
    if assemble and pypi is not None and installed_chunks(pypi) is not None:
        Output().warn(f"assembling {name} from installed PyPI chunks (once)…")
        return assemble_pypi(entry, pypi, cache, install=False)
    if entry.sources.path:
        raise SteerError(f"model {name}: file not found: {entry.sources.path}", "fix `sources.path` in models.yaml")
    raise SteerError(f"model {name} is not downloaded", f"run `steer models pull {name}`")


# -- Hugging Face Hub ----------------------------------------------------------
def pull_hf(entry: ModelEntry, hf: HfSource, cache: Path | None = None) -> Path:
    """Download through huggingface_hub (its own progress bar, resume and
    atomic rename), then check the sha256; a mismatch deletes the blob."""
    from huggingface_hub import hf_hub_download

    path = Path(hf_hub_download(repo_id=hf.repo, filename=hf.file, revision=hf.revision, cache_dir=hub_cache(cache)))
    if hf.sha256 is not None:
        digest = sha256_file(path)
        if digest != hf.sha256:
            blob = path.resolve()
            path.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise SteerError(
                f"{hf.repo}/{hf.file}@{hf.revision[:12]}: downloaded sha256 {digest[:12]}… does not match {hf.sha256[:12]}…; removed it",
                "retry; if it persists the revision or checksum in models.yaml is wrong",
            )
    return path


# -- PyPI chunk packages --------------------------------------------------------
def installed_chunks(pypi: PypiSource) -> list[Path] | None:
    """Chunk files in package order, or None if any package is missing."""
    chunks: list[Path] = []
    for package in pypi.packages:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            return None
        files = sorted(str(f) for f in dist.files or [] if fnmatch.fnmatch(str(f), pypi.pattern))
        if not files:
            raise SteerError(f"package {package} holds no file matching {pypi.pattern!r}", "fix `pattern` in models.yaml")
        chunks.extend(Path(dist.locate_file(f)) for f in files)
    return chunks


def install_chunks(pypi: PypiSource) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *pypi.packages]
    Output().warn(" ".join(cmd[2:]))
    done = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    if done.returncode != 0:
        raise SteerError("pip could not install the model's chunk packages", f"run `pip install {' '.join(pypi.packages)}` and read its error")


def assemble_pypi(entry: ModelEntry, pypi: PypiSource, cache: Path | None = None, install: bool = True, progress: Progress | None = None) -> Path:
    chunks = installed_chunks(pypi)
    if chunks is None:
        if not install:
            raise SteerError("chunk packages are not installed", f"run `pip install {' '.join(pypi.packages)}`")
        install_chunks(pypi)
        chunks = installed_chunks(pypi)
        if chunks is None:
            raise SteerError("chunk packages still missing after pip install", "check the pip output above")
    target = cache_dir(cache) / entry.file
    target.parent.mkdir(parents=True, exist_ok=True)
    total = sum(c.stat().st_size for c in chunks)
    if pypi.size is not None and total != pypi.size:
        raise SteerError(f"chunks of {entry.file} add up to {total} bytes, expected {pypi.size}", f"reinstall them: pip install --force-reinstall {' '.join(pypi.packages)}")
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            done = 0
            for chunk in chunks:
                with chunk.open("rb") as f:
                    while block := f.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if pypi.sha256 is not None and digest.hexdigest() != pypi.sha256:
            raise SteerError(f"assembled {entry.file} has sha256 {digest.hexdigest()[:12]}…, expected {pypi.sha256[:12]}…; removed it", f"reinstall the chunks: pip install --force-reinstall {' '.join(pypi.packages)}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _marker(target).write_text(f"{_stamp(target)} {digest.hexdigest()}\n")
    return target


def pull(name: str, entry: ModelEntry, source: str = "auto", cache: Path | None = None, progress: Progress | None = None) -> Located:
    """Fetch a model: the hub first, the PyPI chunks when the hub is out of
    reach (or when asked with source='pypi')."""
    if source not in ("auto", "hf", "pypi"):
        raise UsageError(f"unknown source {source!r}", "use auto, hf or pypi")
    present = locate(name, entry, cache)
    if present is not None and source in ("auto", present.source):
        return present
    src = entry.sources
    if src.path and source == "auto":
        found = locate(name, entry, cache)
        if found is None:
            raise SteerError(f"model {name}: file not found: {src.path}", "fix `sources.path` in models.yaml")
        return found
    unreachable = _hub_unreachable() if source == "auto" and src.hf is not None and src.pypi is not None else None
    if unreachable is not None:  # fail over at once: the hub client would spend ~50 s retrying
        Output().warn(f"the hub is out of reach ({unreachable}); using the PyPI chunks")
    elif source in ("auto", "hf") and src.hf is not None:
        try:
            return Located(pull_hf(entry, src.hf, cache), "hf")
        except SteerError:
            raise
        except Exception as exc:  # hub unreachable, offline mode, 404...
            if source == "hf" or src.pypi is None:
                raise SteerError(
                    f"cannot download {name} from the Hugging Face Hub: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                    "check the network / HF_ENDPOINT" + (", or pass --source pypi" if src.pypi else ""),
                ) from None
            Output().warn(f"the hub is out of reach ({type(exc).__name__}); using the PyPI chunks")
    if src.pypi is None:
        raise SteerError(f"model {name} has no {'PyPI' if source == 'pypi' else 'downloadable'} source", "add `sources.hf` or `sources.pypi` in models.yaml, or use --source hf")
    return Located(assemble_pypi(entry, src.pypi, cache, install=True, progress=progress), "pypi")


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached (no such host, refused, silent), learnt
    from one TCP connect of at most 3 s; None when it answers."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None


def remove(name: str, entry: ModelEntry, cache: Path | None = None) -> list[Path]:
    """Delete steer's assembled copy and the hub cache's copy; never a user path."""
    removed: list[Path] = []
    assembled = cache_dir(cache) / entry.file
    for p in (assembled, _marker(assembled)):
        if p.exists():
            p.unlink()
            removed.append(p)
    if entry.sources.hf is not None:
        found = _hub_cached(entry.sources.hf, cache)
        if found is not None:
            blob = found.resolve()
            found.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            removed.append(found)
    return removed
