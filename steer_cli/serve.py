"""`steer serve`: routed reasoning behind an OpenAI-compatible API.

The model field names the route (`steer`, `steer:entropy@0.36`,
`trim:verify@0.8`, `cascade@0.999+pik`, `steer+pik@0.18`, `mix@0.4`, `large`, ..., or `default`:
the route models.yaml names, which `calibrate --router auto` saves), the last user message
is the problem, and every response carries which model wrote each step.
One set of warm engines serves one request at a time, or N with `--parallel N`
(their tokens share each batched pass, and a request joins at its next token):
the rest wait in a bounded queue (429 past it); a request has a deadline; a client that goes
away stops its generation at the next token. Errors are OpenAI-style
`{"error": {"message", "type", "code"}}` objects.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request as HttpRequest  # noqa: TC002 - FastAPI reads the annotation at run time

from steer_cli.errors import SteerError

MAX_BODY = 1 << 20  # bytes


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code, "param": None}}


@dataclass
class Request:
    problem: str
    route: Any  # routers.Route, filled
    max_tokens: int | None
    temperature: float | None
    seed: int | None
    stream: bool


@dataclass
class Counters:
    served: int = 0
    rejected: int = 0
    cancelled: int = 0
    timed_out: int = 0


@dataclass
class Server:
    """A session's warm engines and what guards them."""

    session: Any  # session.Session: engines, limits, budget, meter, trained files
    max_queue: int = 8
    timeout_s: float = 300.0
    api_key: str | None = None
    counters: Counters = field(default_factory=Counters)

    @property
    def engines(self) -> list:
        return self.session.engines

    def __post_init__(self) -> None:
        self._free: queue.SimpleQueue = queue.SimpleQueue()  # lanes not solving: one set of engines each
        for lane in range(self.session.parallel) if self.session.parallel > 1 else [None]:
            self._free.put(lane)
        self._waiting = 0
        self._guard = threading.Lock()

    # -- requests -------------------------------------------------------------
    def parse(self, body: Any) -> Request:
        from steer_cli import routes

        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list", code="invalid_messages")
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        problem = users[-1] if users else None
        if isinstance(problem, list):  # content parts: keep the text ones
            problem = "".join(p.get("text", "") for p in problem if isinstance(p, dict))
        if not isinstance(problem, str) or not problem.strip():
            raise ApiError(400, "no user message with text content", code="invalid_messages")
        name = body.get("model")
        if not isinstance(name, str) or not name.strip():  # the OpenAI API requires it
            raise ApiError(400, "'model' is required: a string naming a route, e.g. steer or trim:verify@0.8 (GET /v1/models lists them)", code="invalid_model")
        if name == "default":  # the route models.yaml names (what `calibrate --router auto` saves)
            name = self.session.defaults.router
        try:
            route = self.session.route(routes.parse(name, "model"))
        except (SteerError, ValueError) as exc:
            why = exc.problem if isinstance(exc, SteerError) else str(exc)
            raise ApiError(404, f"model {name!r} is not served here: {why} (GET /v1/models lists the routes)", code="model_not_found") from None
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise ApiError(400, "'stream' must be true or false", code="invalid_stream")
        return Request(problem.strip(), route, _number(body, "max_tokens", int, 1, 1 << 20), _number(body, "temperature", float, 0.0, 5.0),
                       _number(body, "seed", int, 0, 2**31 - 1), bool(stream))

    def admit(self) -> None:
        """A place in the queue, or 429."""
        with self._guard:
            if self._waiting >= self.max_queue:
                self.counters.rejected += 1
                raise ApiError(429, f"{self._waiting} requests are already queued; try again shortly", "rate_limit_error", "queue_full")
            self._waiting += 1

    def leave(self) -> None:
        with self._guard:
            self._waiting -= 1

    @property
    def queued(self) -> int:
        return self._waiting

    # -- solving (in a worker thread) ----------------------------------------
    def events(self, request: Request, cancel: threading.Event) -> Iterator[Any]:
        """The solver's events for one request, holding a lane (a set of
        engines) while it runs; with `--parallel N`, N requests share each
        batched pass. Stops at the next token once `cancel` is set or time runs out."""
        deadline = time.monotonic() + self.timeout_s
        lane = self._free.get()
        try:
            scheduler = self.session.lanes()[1] if lane is not None else None
            with scheduler.working() if scheduler is not None else nullcontext():
                self._sampling(request, lane)
                limits = self.session.limits if request.max_tokens is None else replace(self.session.limits, max_tokens=request.max_tokens)
                stream = self.session.solver(request.route, limits, request.seed or 0, lane=lane).solve(request.problem)
                try:
                    for event in stream:
                        if cancel.is_set():
                            self.counters.cancelled += 1
                            return
                        if time.monotonic() > deadline:
                            self.counters.timed_out += 1
                            raise ApiError(504, f"the solution took longer than {self.timeout_s:g} s", "timeout_error", "timeout")
                        yield event
                    self.counters.served += 1
                finally:
                    stream.close()
        finally:
            self._free.put(lane)

    def batching(self) -> dict:
        """How many requests share a pass: the lanes, and the most that ever did."""
        if self.session.parallel == 1:
            return {"parallel": 1}
        scheduler = self.session.lanes()[1]
        return {"parallel": self.session.parallel, "widest_pass": scheduler.widest, "prompt_tokens_copied": sum(c.copied for c in scheduler.cores)}

    def _sampling(self, request: Request, lane: int | None) -> None:
        for engine in self.engines if lane is None else self.session.lanes()[0][lane]:
            engine.set_sampling(request.temperature, request.seed)


def _number(body: dict, key: str, kind: type, low: float, high: float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise ApiError(400, f"'{key}' must be {what}, not {json.dumps(value)[:40]}", code=f"invalid_{key}")
    if not low <= value <= high:  # NaN included
        bounds = f"[{int(low)}, {int(high)}]" if kind is int else f"[{low:g}, {high:g}]"
        raise ApiError(400, f"'{key}' {value} is outside {bounds}", code=f"invalid_{key}")
    return kind(value)


# -- response shapes ------------------------------------------------------------
def step_note(step: Any) -> dict:
    import math

    return {"step": step.index, "tier": step.tier, "model": step.model, "confidence": round(math.exp(step.mean_logprob), 5),
            "route_score": step.score, "tokens": step.tokens}


def usage(result: Any) -> dict:
    models = result.cost.models
    prompt = sum(m.prefill_tokens + m.reused_tokens for m in models)
    completion = sum(m.decoded_tokens for m in models)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def steer_block(result: Any) -> dict:
    record = result.to_dict()
    return {"answer": result.answer, "finish": result.finish, "steps": [step_note(s) for s in result.steps],
            "cost": record["cost"], "attempts": record["attempts"], "discarded_steps": len(result.drafts)}


def finish_reason(result: Any) -> str:
    return "length" if result.finish in ("max_tokens", "max_steps", "step_tokens", "context") else "stop"


def completion(request: Request, result: Any, rid: str, created: int) -> dict:
    return {
        "id": rid, "object": "chat.completion", "created": created, "model": request.route.label,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": finish_reason(result)}],
        "usage": usage(result), "steer": steer_block(result),
    }


def chunk(request: Request, rid: str, created: int, delta: dict, finish: str | None = None, **extra: Any) -> str:
    return json.dumps({"id": rid, "object": "chat.completion.chunk", "created": created, "model": request.route.label,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


# -- the app ----------------------------------------------------------------------
def create_app(server: Server):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from sse_starlette.sse import EventSourceResponse

    app = FastAPI(title="steer", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_: HttpRequest, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: HttpRequest, exc: StarletteHTTPException) -> JSONResponse:
        """404s and 405s of routes that do not exist: the same error object as the rest."""
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(ApiError(exc.status_code, str(exc.detail), kind, f"http_{exc.status_code}").body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.middleware("http")
    async def guard(request: HttpRequest, call_next):
        if server.api_key is not None and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {server.api_key}":
                return JSONResponse(ApiError(401, "missing or wrong API key", "authentication_error", "invalid_api_key").body(), status_code=401)
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY:
            return JSONResponse(ApiError(413, f"request body over {MAX_BODY} bytes", code="body_too_large").body(), status_code=413)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": [e.name for e in server.engines], "queued": server.queued, **vars(server.counters), **server.batching()}

    @app.get("/v1/models")
    async def models() -> dict:
        routes = ["default", *(r.label for r in server.session.runnable())]  # a router whose trained file is missing is not served
        return {"object": "list", "data": [{"id": r, "object": "model", "created": 0, "owned_by": "steer"} for r in routes]}

    @app.post("/v1/chat/completions")
    async def chat(http: HttpRequest):
        raw = await http.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes", code="body_too_large")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
        request = server.parse(body)
        server.admit()
        rid, created, cancel = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), threading.Event()
        if request.stream:
            return EventSourceResponse(_stream(server, request, rid, created, cancel, http), ping=15)
        try:
            result = await _solve(server, request, cancel, http)
        finally:
            server.leave()
        return completion(request, result, rid, created)

    return app


async def _pump(server: Server, request: Request, cancel: threading.Event):
    """Yield the solver's events from a worker thread as they come."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    def work() -> None:
        try:
            for event in server.events(request, cancel):
                loop.call_soon_threadsafe(queue.put_nowait, event)
        except BaseException as exc:  # noqa: BLE001 - handed to the request to report
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        loop.call_soon_threadsafe(queue.put_nowait, done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise _as_api_error(item)
            yield item
    finally:
        cancel.set()  # a consumer that stops early (client gone) stops the solve


def _as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, SteerError):
        return ApiError(500, str(exc), "server_error", "solve_failed")
    return ApiError(500, f"{type(exc).__name__}: {exc}", "server_error", "internal_error")


async def _solve(server: Server, request: Request, cancel: threading.Event, http) -> Any:
    from steer_cli.solver import Solved

    async def watch() -> None:
        while not cancel.is_set():
            if await http.is_disconnected():
                cancel.set()
                return
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    try:
        async for event in _pump(server, request, cancel):
            if isinstance(event, Solved):
                return event.result
    finally:
        watcher.cancel()
    raise ApiError(499, "the client closed the request", code="client_closed")


async def _stream(server: Server, request: Request, rid: str, created: int, cancel: threading.Event, http):
    from steer_cli.solver import Discarded, Solved, StepFinished, StepStarted, TextDelta

    current: dict = {}
    try:
        yield chunk(request, rid, created, {"role": "assistant", "content": ""})
        async for event in _pump(server, request, cancel):
            if isinstance(event, StepStarted):
                current = {"step": event.index, "tier": event.tier, "model": event.model, "route_score": event.score}
            elif isinstance(event, TextDelta):
                yield chunk(request, rid, created, {"content": event.text}, steer=current)
            elif isinstance(event, StepFinished):
                yield chunk(request, rid, created, {}, steer={**step_note(event.step), "step_done": True})
            elif isinstance(event, Discarded):
                yield chunk(request, rid, created, {}, steer={"discarded": len(event.steps), "to_tier": event.to_tier, "score": event.score})
            elif isinstance(event, Solved):
                result = event.result
                yield chunk(request, rid, created, {}, finish_reason(result), usage=usage(result), steer=steer_block(result))
        yield "[DONE]"
    except ApiError as exc:
        yield json.dumps(exc.body())
    finally:
        cancel.set()
        server.leave()
