"""Turn what the user named (registry names or GGUF paths) into warm engines."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from steer_cli import fetch
from steer_cli.engine import LlamaEngine, LoadOptions
from steer_cli.errors import SteerError
from steer_cli.registry import Registry, load_registry


@dataclass(frozen=True)
class ModelChoice:
    name: str
    path: Path
    n_ctx: int = 4096
    chat_template: str | None = None


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".gguf") or "/" in spec or Path(spec).is_file()


def resolve_model(spec: str, registry: Registry, cache: Path | None = None) -> ModelChoice:
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise SteerError(f"model file not found: {spec}", "pass an existing .gguf path or a name from `steer models list`")
        return ModelChoice(name=path.stem, path=path)
    entry = registry.model(spec)
    return ModelChoice(spec, fetch.require(spec, entry, cache), entry.n_ctx, entry.chat_template)


def tier_specs(registry: Registry, tiers: str | None = None, small: str | None = None, large: str | None = None) -> list[str]:
    """The tier set (default from models.yaml), with --small/--large replacing its ends."""
    names = list(registry.tier_names(tiers))
    if small:
        names[0] = small
    if large:
        names[-1] = large
    return names


def build_tiers(
    small: str | None = None,
    large: str | None = None,
    tiers: str | None = None,
    *,
    registry: Registry | None = None,
    cache: Path | None = None,
    options: LoadOptions | None = None,
    n_ctx: int | None = None,
) -> list[LlamaEngine]:
    """One engine per tier; `n_ctx` None takes each model's own from models.yaml."""
    registry = registry or load_registry()
    base = options or LoadOptions()
    engines = []
    for spec in tier_specs(registry, tiers, small, large):
        choice = resolve_model(spec, registry, cache)
        opts = replace(base, n_ctx=n_ctx or choice.n_ctx, chat_template=base.chat_template or choice.chat_template)
        engines.append(LlamaEngine(choice.name, choice.path, opts))
    return engines
