"""`steer serve`: the routers behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import errno
import os
from typing import Annotated, Optional

import typer

from steer_cli.commands import common


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="Name of an environment variable holding the API key clients must send (Bearer).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait for the engines; more get 429.")] = 8,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds one request may take.")] = 300.0,
    pik: common.Pik = None,
    policy: common.PolicyFile = None,
    trained: common.Trained = None,
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
    parallel: common.Parallel = 1,
) -> None:
    """Serve routed reasoning on /v1/chat/completions (the model field names the route), /v1/models and /health; logs go to stderr. Starts in 10-30 s on 2 cores (the models load first); a request takes as long as `steer ask`."""
    from steer_cli.output import Output
    from steer_cli.serve import Server, create_app
    from steer_cli.session import Session

    if not 0 <= port <= 65535:
        raise common.UsageError(f"--port {port} is not a TCP port", "pass 1-65535, e.g. 8000")
    if max_queue < 1 or not timeout > 0:
        raise common.UsageError("--max-queue and --timeout must be positive", "e.g. --max-queue 8 --timeout 300")
    key = None
    if api_key_env is not None:
        key = os.environ.get(api_key_env)
        if not key:
            raise common.UsageError(f"--api-key-env {api_key_env}: that variable is unset or empty", f"export {api_key_env}=... first")
    session = Session.from_options(common.options(locals()))
    sock = _bind(host, port)  # a busy port is said before any model loads
    for engine in session.engines:  # load the weights now, not on the first request
        engine.start("warm up")
        engine.next_token()
    session.meter  # noqa: B018 - the profile (measured where a budget in time needs it) before the first request
    if session.parallel > 1:
        session.lanes()  # the KV caches for N requests, reserved (or refused) now
    import uvicorn

    Output().note(f"serving {', '.join(e.name for e in session.engines)} on http://{host}:{port}/v1 (Ctrl-C stops)")
    server = uvicorn.Server(uvicorn.Config(create_app(Server(session, max_queue, timeout, key)), log_level="warning"))
    server.run(sockets=[sock])


def _bind(host: str, port: int):
    """The listening socket, bound now, so the server starts on it or not at all."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        fix = "stop what holds it, or pass another --port" if exc.errno == errno.EADDRINUSE else "pass an address of this machine, e.g. --host 127.0.0.1"
        raise common.SteerError(f"cannot listen on {host}:{port}: {exc.strerror}", fix) from None
    sock.set_inheritable(True)
    return sock
