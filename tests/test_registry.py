"""models.yaml: strict validation with useful messages, entry-by-entry overrides."""

from pathlib import Path

import pytest

from steer_cli.errors import UsageError
from steer_cli.registry import load_registry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.yaml"
    path.write_text(text)
    return path


def test_packaged_registry_has_the_offline_default_pair():
    reg = load_registry()
    assert reg.tier_names() == ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    small = reg.model("qwen2.5-coder-0.5b-instruct")
    assert small.sources.pypi.size == 491_400_064
    assert small.sources.hf.sha256 == small.sources.pypi.sha256
    assert len(reg.model("qwen2.5-coder-1.5b-instruct").sources.pypi.packages) == 22


def test_user_file_overrides_entry_by_entry(tmp_path):
    cfg = write(tmp_path, "models:\n  qwen2.5-coder-0.5b-instruct:\n    file: mine.gguf\n    sources: {path: /models/mine.gguf}\ndefaults:\n  router: small\n")
    reg = load_registry(cfg)
    assert reg.model("qwen2.5-coder-0.5b-instruct").sources.path == "/models/mine.gguf"
    assert reg.model("qwen2.5-coder-1.5b-instruct").sources.pypi is not None  # untouched
    assert reg.defaults.router == "small"
    assert reg.defaults.signals == load_registry().defaults.signals  # untouched fields keep the packaged value


def test_steer_home_file_is_picked_up(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text("defaults:\n  signals: {steer: margin}\n")
    monkeypatch.setenv("STEER_HOME", str(home))
    assert load_registry().defaults.signals["steer"] == "margin"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("models:\n  m:\n    file: a.gguf\n    sources: {hf: {repo: a/b, file: a.gguf, sha: x}}\n", "models.m.sources.hf.sha: Extra inputs are not permitted"),
        ("models:\n  m:\n    file: a.gguf\n    sources: {hf: {repo: a/b, file: a.gguf, sha256: nothex}}\n", "models.m.sources.hf.sha256: String should match pattern"),
        ("models:\n  m:\n    sources: {path: /x.gguf}\n", "models.m: Value error, `file` is required"),
        ("tiers:\n  pair: [qwen2.5-coder-0.5b-instruct]\n", "tiers.pair: needs 2 or more models"),
        ("tiers:\n  pair: [qwen2.5-coder-0.5b-instruct, qwen-huge]\n", "tiers.pair: unknown model 'qwen-huge'"),
        ("defaults:\n  thresholds: {steer: 2}\n", "defaults.thresholds"),
        ("defaults:\n  tiers: nope\n", "defaults.tiers: unknown tier set 'nope'"),
        ("models: [\n", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_errors_name_the_file_the_entry_and_the_field(tmp_path, text, needle):
    cfg = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_registry(cfg)
    assert str(cfg) in str(err.value) and needle in str(err.value)


def test_yaml_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    cfg = write(tmp_path, f"models: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_registry(cfg)
    assert not marker.exists()


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(UsageError, match="did you mean 'qwen2.5-coder-1.5b-instruct'"):
        load_registry().model("qwen2.5-coder-1.5b-instruc")
