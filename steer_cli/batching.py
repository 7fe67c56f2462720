"""Many problems at once: one llama.cpp pass over the weights for every
sequence that needs its next token.

Each of N lanes solves one problem at a time in a thread of its own, with a
`SeqEngine` per tier: the same transcript bookkeeping as `LlamaEngine`, but
its evaluations go to the model's `Core`, one context holding a sequence per
lane. The `Scheduler` collects the lanes' requests and, once every lane waits
(or the oldest request has waited `GATHER_S`), runs one batched pass per
model. Routers and the step loop do not change; each lane's counters are its
own, and a pass's time is shared out by the tokens each lane sent.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from steer_cli.engine import LlamaEngine
from steer_cli.errors import SteerError, UsageError
from steer_cli.weights import LoadOptions, Weights, physical_cores

T = TypeVar("T")
R = TypeVar("R")

GATHER_S = 0.5  # a lane stuck elsewhere joins the next pass; any sooner and its Python would contend with the pass for the cores
ROWS_PER_PASS = 64  # logits rows per llama_decode: each is a vocabulary of floats
MIN_COPY = 16  # prompt tokens another sequence holds before sharing its cells is worth a copy's bookkeeping
MAX_PARALLEL = 64
READ_ALONE = 32  # tokens to compute past which a request shares its passes only with other such reads


@dataclass
class Request:
    """Tokens for one sequence from `pos` on; logits wanted at `rows` (indices into `tokens`)."""

    core: Core
    seq: int
    pos: int
    tokens: list[int]
    rows: list[int]
    out: dict[int, np.ndarray] = field(default_factory=dict)
    wall_s: float = 0.0  # this request's share of the passes it took part in
    load_s: float = 0.0
    call: Callable[[], Any] | None = None  # run alone, between passes (P(IK)'s embedding)
    value: Any = None
    error: BaseException | None = None
    done: bool = False
    since: float = field(default_factory=time.perf_counter)


class Core:
    """One model's weights and its many-sequence context (made on first use)."""

    def __init__(self, engine: LlamaEngine, lanes: int) -> None:
        self.engine, self.lanes = engine, lanes
        self.weights: Weights = engine.model
        self.options: LoadOptions = engine.options
        self._ctx: Any = None
        self._batch: Any = None
        self._held: dict[int, list[int]] = {}  # the tokens each sequence's KV holds, decoded
        self.copied = 0  # tokens copied from another sequence's KV instead of computed
        self._rows = 0  # logits rows the batch being filled asks for

    @property
    def ready(self) -> bool:
        return self._ctx is not None

    def open(self) -> float:
        """Load the weights (if the engine has not) and the context; the seconds it took."""
        import llama_cpp

        started = time.perf_counter()
        self.engine._ensure_weights()
        params = llama_cpp.llama_context_default_params()
        threads = self.options.n_threads or physical_cores()
        params.n_ctx = self.options.n_ctx * self.lanes  # room for every lane's n_ctx, in one cache they share
        params.n_batch = params.n_ubatch = self.options.n_batch
        params.n_seq_max = self.lanes
        params.n_threads = params.n_threads_batch = threads
        # One unified cache: with a stream per sequence, llama.cpp splits a pass into one
        # ubatch per run of consecutive sequence ids, so 4 lanes out of 16 cost 4 lone
        # passes (measured: 169 ms against 79 unified; benchmarks/passes.py, 2026-12-06).
        params.kv_unified = True
        self._ctx = llama_cpp.llama_init_from_model(self.weights.llm._model.model, params)
        if self._ctx is None:
            raise SteerError(f"{self.engine.name}: llama.cpp could not make a context for {self.lanes} sequences", "lower --parallel")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self.options.n_batch, 0, 1)
        self.weights.llm._model._exit_stack.callback(self.close)  # the context goes before its model
        return time.perf_counter() - started

    def close(self) -> None:
        import llama_cpp

        if self._ctx is not None:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = self._batch = None
            self._held = {}

    def run(self, requests: list[Request]) -> None:
        """Every request's tokens, packed into as few passes as n_batch allows:
        decodes and short reads together, long reads apart."""
        import llama_cpp

        self._lead(requests)
        starts: list[tuple[Request, int]] = []
        for request in requests:
            skip = self._adopt(request)
            llama_cpp.llama_memory_seq_rm(self._memory, request.seq, request.pos + skip, -1)
            self._held[request.seq] = self._held.get(request.seq, [])[: request.pos + skip]
            starts.append((request, skip))
        taken: list[tuple[Request, int]] = []
        # Other lanes' next tokens in the pass of a long read cost about as much again as
        # the two passes apart (benchmarks/pass_cost.py, 2026-12-07): reads get passes of their own.
        for reads in (False, True):
            for request, skip in starts:
                if (len(request.tokens) - skip > READ_ALONE) == reads:
                    wanted = set(request.rows)
                    for k in range(skip, len(request.tokens)):
                        self._add(taken, request, k, k in wanted)
            self._pass(taken)
        for request in requests:
            self._held[request.seq] = self._held[request.seq][: request.pos] + request.tokens

    def _add(self, taken: list[tuple[Request, int]], request: Request, k: int, row: bool) -> None:
        """Token k of the request into the batch, after a pass if the batch is full."""
        batch = self._batch
        if batch.n_tokens == self.options.n_batch or (row and self._rows == ROWS_PER_PASS):
            self._pass(taken)
        j = batch.n_tokens
        batch.token[j], batch.pos[j], batch.n_seq_id[j] = request.tokens[k], request.pos + k, 1
        batch.seq_id[j][0] = request.seq
        batch.logits[j] = row
        batch.n_tokens += 1
        self._rows += row
        taken.append((request, k if row else -1))

    def _view(self, request: Request) -> list[int]:
        return self._held.get(request.seq, [])[: request.pos] + request.tokens

    @staticmethod
    def _limit(request: Request) -> int:
        """How far a copy may reach: a token whose logits are wanted is computed."""
        return request.pos + min(request.rows, default=len(request.tokens) - 1)

    def _lead(self, requests: list[Request]) -> None:
        """Lanes that start at once share a chat template no sequence holds:
        compute it once, in the first of them, for the others to copy."""
        long = [r for r in requests if len(r.tokens) >= MIN_COPY]
        views = {id(r): self._view(r) for r in long}
        for request in long:
            view = views[id(request)]
            shared = max((min(_common(view, views[id(q)]), self._limit(request)) for q in long if q is not request), default=0)
            held = max((_common(h, view) for h in self._held.values()), default=0)
            if shared >= max(held, request.pos) + MIN_COPY:
                lead = Request(self, request.seq, request.pos, view[request.pos : shared], [])
                self.run([lead])
                request.wall_s += lead.wall_s
                return

    def _adopt(self, request: Request) -> int:
        """Tokens of the request its sequence's KV already holds, after a copy
        of another sequence's KV when that one holds a longer prefix (a lane's
        first problem, after another lane computed the chat template)."""
        import llama_cpp

        if len(request.tokens) < MIN_COPY:
            return 0
        view, limit = self._view(request), self._limit(request)
        own = max(request.pos, min(_common(self._held.get(request.seq, []), view), limit))
        best, source = own + MIN_COPY - 1, None
        for seq, held in self._held.items():
            shared = min(_common(held, view), limit)
            if seq != request.seq and shared > best:
                best, source = shared, seq
        if source is None:
            return own - request.pos
        # In the unified cache a copy shares the source's cells for those positions: nothing is computed.
        llama_cpp.llama_memory_seq_rm(self._memory, request.seq, -1, -1)
        llama_cpp.llama_memory_seq_cp(self._memory, source, request.seq, 0, best)
        self.copied += best - own
        return best - request.pos

    def _pass(self, taken: list[tuple[Request, int]]) -> None:
        import llama_cpp

        if not taken:
            return
        started = time.perf_counter()
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        self._batch.n_tokens = self._rows = 0
        if status != 0:
            raise SteerError(f"{self.engine.name}: llama.cpp found no room for {len(taken)} tokens across {self.lanes} sequences (status {status})",
                             "lower --parallel or --max-steps, or raise n_ctx in models.yaml")
        for j, (request, k) in enumerate(taken):
            if k >= 0:
                request.out[k] = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, j), shape=(self.weights.n_vocab,)).copy()
        share = (time.perf_counter() - started) / len(taken)
        for request, _ in taken:
            request.wall_s += share
        taken.clear()


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    differ = np.nonzero(np.asarray(a[:n]) != np.asarray(b[:n]))[0]
    return int(differ[0]) if differ.size else n


class Scheduler:
    """Runs the cores' passes in a thread of its own, one model at a time
    (two llama.cpp computations on 2 cores slow each other ~10x)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._queue: list[Request] = []
        self._running = 0  # lanes working, not waiting on a pass
        self.widest = 0  # the most sequences one pass has served
        self.cores: list[Core] = []
        self._thread = threading.Thread(target=self._loop, name="steer-scheduler", daemon=True)
        self._thread.start()

    def working(self) -> _Working:
        """Hold while a thread solves: the scheduler waits for it before a pass."""
        return _Working(self, 1)

    def away(self) -> _Working:
        """Hold while a solving thread waits on something else (a remote server): passes go on without it."""
        return _Working(self, -1)

    def _add(self, delta: int) -> None:
        with self._cv:
            self._running += delta
            self._cv.notify_all()

    def submit(self, request: Request) -> Request:
        with self._cv:
            self._queue.append(request)
            self._running -= 1
            self._cv.notify_all()
            self._cv.wait_for(lambda: request.done)
        if request.error is not None:
            raise request.error
        return request

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._due():
                    self._cv.wait(timeout=GATHER_S if self._queue else None)
                if any(not r.core.ready for r in self._queue):  # loading swaps the tokenizer's handle: nothing may run
                    self._cv.wait_for(lambda: self._running <= 0)
                taken, self._queue = self._queue, []
            self._serve(taken)
            with self._cv:
                for request in taken:
                    request.done = True
                self._running += len(taken)
                self._cv.notify_all()

    def _due(self) -> bool:
        if not self._queue:
            return False
        return self._running <= 0 or time.perf_counter() - self._queue[0].since >= GATHER_S

    def _serve(self, taken: list[Request]) -> None:
        by_core: dict[int, list[Request]] = {}
        for request in taken:
            by_core.setdefault(id(request.core), []).append(request)
        for group in by_core.values():
            core = group[0].core
            try:
                if not core.ready:
                    group[0].load_s = core.open()
                calls = [r for r in group if r.call is not None]
                for request in calls:
                    request.value = request.call()
                core.run([r for r in group if r.call is None])
                self.widest = max(self.widest, len({r.seq for r in group if r.call is None}))
            except BaseException as exc:  # noqa: BLE001 (the waiting lanes raise it)
                for request in group:
                    request.error = exc


class _Working:
    def __init__(self, scheduler: Scheduler, sign: int) -> None:
        self.scheduler, self.sign = scheduler, sign

    def __enter__(self) -> None:
        self.scheduler._add(self.sign)

    def __exit__(self, *exc: object) -> None:
        self.scheduler._add(-self.sign)


class SeqEngine(LlamaEngine):
    """A LlamaEngine whose transcript is one sequence of its model's Core."""

    batched = True  # its wall time is its share of the passes (the solver reports that, not the time it waited)

    def __init__(self, engine: LlamaEngine, core: Core, seq: int, scheduler: Scheduler) -> None:
        self._twin_of(engine)
        self.core, self.seq, self.scheduler = core, seq, scheduler
        self._rng = np.random.default_rng(self.options.seed + seq)
        self._kv: list[int] = []
        self._row_out: np.ndarray | None = None

    def _cached_ids(self) -> np.ndarray:
        return np.asarray(self._kv[: self._kv_len], dtype=np.int64)

    def _has_cache(self) -> bool:
        return True

    def _ensure_weights(self) -> None:
        """The scheduler loads the weights, with every lane waiting."""

    def _request(self, pos: int, tokens: list[int], rows: list[int]) -> dict[int, np.ndarray]:
        done = self.scheduler.submit(Request(self.core, self.seq, pos, tokens, rows))
        self.stats.wall_s += done.wall_s
        self.stats.load_s += done.load_s
        del self._kv[pos:]
        self._kv.extend(tokens)
        return done.out

    def _evaluate(self, start: int, tokens: list[int]) -> None:
        self._row_out = self._request(start, tokens, [len(tokens) - 1])[len(tokens) - 1]

    def _score_chunk(self, pos: int, chunk: list[int]) -> Callable[[int], np.ndarray]:
        out = self._request(pos, chunk, list(range(len(chunk))))
        self._row_out = out[len(chunk) - 1]  # the row a following sample reads
        return out.__getitem__

    def _logits(self) -> np.ndarray:
        assert self._row_out is not None
        return self._row_out

    def embed_prompt(self, problem: str) -> np.ndarray:
        """P(IK)'s embedding, run by the scheduler between passes on the model's
        own engine; what it read and the time it took are this lane's."""
        base = self.core.engine

        def embed() -> tuple[np.ndarray, Any]:
            before = base.stats.snapshot()
            return base.embed_prompt(problem), base.stats.since(before)

        done = self.scheduler.submit(Request(self.core, self.seq, 0, [], [], call=embed))
        vector, spent = done.value
        for counter in ("wall_s", "load_s", "evaluated_tokens", "prefill_tokens"):
            setattr(self.stats, counter, getattr(self.stats, counter) + getattr(spent, counter))
        self.stats.load_s += done.load_s
        return vector


def kv_bytes(engine: LlamaEngine, sequences: int) -> int:
    """KV cache (f16) for `sequences` transcripts of the engine's n_ctx, from the GGUF's header."""
    meta = engine.model.llm.metadata
    arch = meta.get("general.architecture", "")
    layers = int(meta.get(f"{arch}.block_count", 0))
    heads = int(meta.get(f"{arch}.attention.head_count", 1)) or 1
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    width = int(meta.get(f"{arch}.embedding_length", 0))
    key = int(meta.get(f"{arch}.attention.key_length", width // heads))
    value = int(meta.get(f"{arch}.attention.value_length", key))
    return layers * kv_heads * (key + value) * 2 * engine.options.n_ctx * sequences


def reserved(engines: list, sequences: int) -> int:
    return sum(kv_bytes(e, sequences) for e in engines if isinstance(e, LlamaEngine))


def available_bytes() -> int | None:
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def lanes(engines: list, n: int) -> tuple[list[list], Scheduler]:
    """n sets of tiers over the same models: local tiers share a Core per
    model, remote tiers a connection pool. Refused before any model loads
    when the KV caches would not fit in memory."""
    local = [e for e in engines if isinstance(e, LlamaEngine)]
    need = reserved(engines, n) + sum(e.path.stat().st_size for e in local)
    free = available_bytes()
    if free is not None and need > free:
        raise UsageError(f"--parallel {n}: the models and their KV caches ({need / 2**30:.1f} GiB for n_ctx {local[0].options.n_ctx}) exceed the "
                         f"{free / 2**30:.1f} GiB of memory available", "lower --parallel, or lower n_ctx in models.yaml")
    scheduler = Scheduler()
    cores = {id(e): Core(e, n) for e in local}
    scheduler.cores = list(cores.values())
    for engine in engines:
        if id(engine) not in cores and not hasattr(engine, "lane"):
            raise UsageError(f"{engine.name} cannot serve several problems at once", "drop --parallel")
    sets = [[SeqEngine(e, cores[id(e)], seq, scheduler) if id(e) in cores else e.lane(scheduler.away) for e in engines] for seq in range(n)]
    return sets, scheduler


def solve_all(workers: list[Callable[[T], R]], items: Iterable[T], scheduler: Scheduler | None) -> Iterator[tuple[T, R]]:
    """(item, result) in the order problems finish: worker i runs in lane i.
    A failure stops the other lanes after their current problem and is raised."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def lane(work: Callable[[T], R]) -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                break
            try:
                if scheduler is None:
                    finished.put((item, work(item), None))
                else:
                    with scheduler.working():
                        finished.put((item, work(item), None))
            except BaseException as exc:  # noqa: BLE001 (raised in the caller's thread)
                finished.put((item, None, exc))
                return
        finished.put(None)

    threads = [threading.Thread(target=lane, args=(w,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    alive = len(threads)
    while alive:
        got = finished.get()
        if got is None:
            alive -= 1
            continue
        item, result, error = got
        if error is not None:
            stop.set()
            raise error
        yield item, result
