"""`steer serve`: the routers behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.commands.common import boundary


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="Name of an environment variable holding the API key clients must send (Bearer).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait for the engines; more get 429.")] = 8,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds one request may take.")] = 300.0,
    pik: common.Pik = None,
    policy: common.PolicyFile = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    budget: common.BudgetCap = None,
    cost_unit: common.CostUnit = None,
    max_large_tokens: common.MaxLargeTokens = None,
    max_steps: common.MaxSteps = 24,
    max_step_tokens: common.MaxStepTokens = 256,
    delimiter: common.Delimiter = "\\n\\n",
    n_ctx: common.NCtx = None,
    threads: common.Threads = None,
    gpu_layers: common.GpuLayers = 0,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
) -> None:
    """Serve routed reasoning on /v1/chat/completions (the model field names the route), /v1/models and /health."""
    with boundary():
        from steer_cli.serve import Server, create_app

        if not 0 <= port <= 65535:
            raise common.UsageError(f"--port {port} is not a TCP port", "pass 1-65535, e.g. 8000")
        if max_queue < 1 or timeout <= 0:
            raise common.UsageError("--max-queue and --timeout must be positive", "e.g. --max-queue 8 --timeout 300")
        key = None
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise common.UsageError(f"--api-key-env {api_key_env}: that variable is unset or empty", f"export {api_key_env}=... first")
        engine_args = common.EngineArgs(small, large, tiers, config, cache_dir, threads, gpu_layers, n_ctx)
        registry = engine_args.registry()
        limits = common.step_limits(max_steps, max_step_tokens, delimiter)
        unit = common.cost_unit(cost_unit, registry.defaults)
        caps = common.budget(max_large_tokens, budget, registry.defaults, unit)
        classifier = common.load_pik(pik)
        trained = common.load_policy(policy)
        engines = engine_args.engines(registry)
        common.check_pik(classifier, engines)
        common.check_policy(trained, engines)
        for engine in engines:  # load the weights now, not on the first request
            engine.start("warm up")
            engine.next_token()
        costing = common.meter(engines, unit, measure=caps.relative is not None and unit == "time")
        server = Server(engines, registry.defaults, limits, caps, classifier, max_queue, timeout, key, meter=costing, policy=trained)
        import uvicorn

        print(f"steer: serving {', '.join(e.name for e in engines)} on http://{host}:{port}/v1 (Ctrl-C stops)", file=sys.stderr)
        uvicorn.run(create_app(server), host=host, port=port, log_level="warning")
