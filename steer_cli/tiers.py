"""The tiers: what the user named (registry names or GGUF paths) turned into warm engines."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from steer_cli import fetch
from steer_cli.engine import LlamaEngine, LoadOptions
from steer_cli.errors import SteerError
from steer_cli.registry import Price, Registry, load_registry


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
        if path.is_dir():
            raise SteerError(f"{spec} is a directory, not a model file", "pass the .gguf file inside it, or a name from `steer models list`")
        if not path.is_file():
            raise SteerError(f"model file not found: {spec}", "pass an existing .gguf path or a name from `steer models list`")
        return ModelChoice(name=path.stem, path=path)
    entry = registry.model(spec)
    return ModelChoice(spec, fetch.require(spec, entry, cache), entry.n_ctx, entry.chat_template)


def prices(registry: Registry, specs: list[str]) -> list[Price | None]:
    """What each tier bills, as build_tiers will price it: a local model $0
    unless models.yaml prices it; a remote one its price, or None (unknown)."""
    free = Price(input_per_m=0, output_per_m=0)
    out: list[Price | None] = []
    for spec in specs:
        entry = None if _looks_like_path(spec) else registry.model(spec)
        price = entry.price if entry is not None else None
        remote = entry is not None and entry.sources.endpoint is not None
        out.append(price if remote else price or free)
    return out


def tier_specs(registry: Registry, tiers: str | None = None, small: str | None = None, large: str | None = None) -> list[str]:
    """The tier set (default from models.yaml), with --small/--large replacing its ends."""
    names = list(registry.tier_names(tiers))
    if small:
        names[0] = small
    if large:
        names[-1] = large
    return names


def _remote(name: str, registry: Registry, cache: Path | None, options: LoadOptions):
    """A tier behind an OpenAI-compatible server; its template and tokenizer
    from the `template_from` model when named (vocab only: no weights load)."""
    from steer_cli.remote import RemoteEngine

    entry = registry.model(name)
    endpoint = entry.sources.endpoint
    local = None
    if endpoint.template_from:
        choice = resolve_model(endpoint.template_from, registry, cache)
        local = LlamaEngine(choice.name, choice.path, replace(options, chat_template=choice.chat_template))
    return RemoteEngine(name, endpoint, entry.params, options, local, entry.chat_template, price=entry.price)


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
    engines: list = []
    for spec in tier_specs(registry, tiers, small, large):
        if not _looks_like_path(spec) and registry.model(spec).sources.endpoint is not None:
            engines.append(_remote(spec, registry, cache, replace(base, n_ctx=n_ctx or registry.model(spec).n_ctx)))
            continue
        choice = resolve_model(spec, registry, cache)
        opts = replace(base, n_ctx=n_ctx or choice.n_ctx, chat_template=base.chat_template or choice.chat_template)
        engine = LlamaEngine(choice.name, choice.path, opts)
        (engine.price,) = prices(registry, [spec])  # a local model bills $0 unless models.yaml prices it (electricity, say)
        engines.append(engine)
    return engines
