"""A GGUF file's llama.cpp handle, its tokenizer and its chat template.

A vocabulary-only handle serves tokenizing and counting until the weights
are needed; then the full model loads once. The engine (engine.py) keeps the
transcript and the evaluation on top of it.
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steer_cli.errors import SteerError

if TYPE_CHECKING:
    from llama_cpp import Llama

# The instruction is part of the user turn, not a system turn: several chat
# templates (Gemma's among them) reject or fold a system role. Chosen on 20
# GSM8K train problems with the 0.5B: 7/20 correct, 6.5 steps per problem,
# against 1/20 and 2.3 steps for a "short paragraphs, 'The answer is N'" wording.
STEP_INSTRUCTION = (
    "Please reason step by step, separating the steps with blank lines, "
    "and put your final answer within \\boxed{}."
)
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}Answer:\n{% endif %}"
)


def physical_cores() -> int:
    """Physical cores available to this process; llama.cpp gains nothing from SMT."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in allowed:
        sibling = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(sibling.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(len(cores), 1)


@dataclass
class LoadOptions:
    n_ctx: int = 4096
    n_threads: int | None = None  # None: physical cores
    n_gpu_layers: int = 0
    n_batch: int = 512
    # Off: llama.cpp repacks Q4_K weights for its CPU kernels, so with mmap
    # the file's pages stay resident beside the repacked copy (measured: peak
    # RSS 1883 MiB for the 1.066 GiB 1.5B file, 1292 MiB without), same speed.
    use_mmap: bool = False
    chat_template: str | None = None  # override the GGUF's own template
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0
    top_k: int = 0  # alternatives reported per sampled token


_log_callback: Any = None  # kept referenced: llama.cpp calls it from C


def _route_llama_logs() -> None:
    """llama.cpp logs through llama-cpp-python's callback, whose level every
    `Llama()` resets; install ours once so load chatter never reaches the
    user's stderr unless STEER_DEBUG is set."""
    global _log_callback
    if _log_callback is not None:
        return
    import sys

    import llama_cpp

    debug = bool(os.environ.get("STEER_DEBUG"))

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if debug:
            sys.stderr.write(text.decode("utf-8", "replace"))

    _log_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


_amx_checked = False


def avoid_amx() -> None:
    """On CPUs with AMX, llama.cpp stores the weights in its AMX buffer, and its
    AMX matrix product segfaults on the first evaluation of these Q4_K_M models
    (llama.cpp #20824, seen here on a Sapphire Rapids VM: any decode, one
    sequence or many). `Llama()` takes no switch for it, so its model defaults
    are wrapped once to keep weights in plain CPU memory (also skipping the
    Q4_K repacking). STEER_LLAMA_AMX=1 keeps AMX for a llama.cpp where it works."""
    global _amx_checked
    if _amx_checked:
        return
    _amx_checked = True
    import llama_cpp
    import llama_cpp.llama_cpp as low

    if os.environ.get("STEER_LLAMA_AMX") == "1" or not amx_in_llama():
        return
    defaults = low.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = llama_cpp.llama_model_default_params = without_extra_buffers


def amx_in_llama() -> bool:
    """Whether this llama.cpp build runs AMX kernels on this CPU."""
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode("utf-8", "replace")


class Weights:
    """One GGUF file in llama.cpp: `llm` is vocabulary-only until `ensure`
    loads the weights; load time is booked on the engine's `stats`."""

    def __init__(self, path: Path, options: LoadOptions, stats: Any) -> None:
        self.path, self.options, self.stats = Path(path), options, stats
        self.llm: Llama = self._open(vocab_only=True)
        self.loaded = False
        self._pieces: dict[int, bytes] = {}
        self._params: int | None = None
        self._chat = self._chat_formatter()

    # -- loading -----------------------------------------------------------
    def _open(self, vocab_only: bool) -> Llama:
        if not self.path.is_file():
            raise SteerError(f"model file not found: {self.path}", "run `steer models pull NAME` or pass an existing .gguf path")
        from llama_cpp import Llama

        _route_llama_logs()
        avoid_amx()
        threads = self.options.n_threads or physical_cores()
        started = time.perf_counter()
        try:
            llm = Llama(
                model_path=str(self.path),
                # A vocabulary-only handle only tokenizes: the smallest context will do.
                n_ctx=64 if vocab_only else self.options.n_ctx,
                n_batch=64 if vocab_only else self.options.n_batch,
                n_ubatch=64 if vocab_only else self.options.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=self.options.n_gpu_layers,
                vocab_only=vocab_only,
                use_mmap=self.options.use_mmap,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise SteerError(
                f"llama.cpp cannot load {self.path}: {exc}".splitlines()[0],
                "check that the file is a complete GGUF model (`steer models verify`)",
            ) from None
        self.stats.load_s += time.perf_counter() - started
        return llm

    def ensure(self) -> bool:
        """Load the weights if they are not yet; True when this call loaded them."""
        if self.loaded:
            return False
        vocab = self.llm
        self.llm = self._open(vocab_only=False)
        vocab.close()
        _release_freed_heap()
        self.loaded = True
        return True

    @property
    def identity(self) -> str:
        """What records key this model by: its file's content (sha256, cached)."""
        from steer_cli.files import content_sha256

        return content_sha256(self.path)

    @property
    def params(self) -> int:
        if self._params is None:
            self._params = gguf_param_count(self.path)
        return self._params

    @property
    def n_vocab(self) -> int:
        return self.llm.n_vocab()

    # -- prompt and tokens -------------------------------------------------
    def _chat_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        meta = self.llm.metadata
        template = self.options.chat_template or meta.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
        return Jinja2ChatFormatter(
            template=template,
            eos_token=self._special_text(self.llm.token_eos()),
            bos_token=self._special_text(self.llm.token_bos()),
        )

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm._model.token_get_text(token)

    def prompt_text(self, problem: str) -> str:
        """The problem in this model's chat template, as text."""
        content = f"{problem.strip()}\n\n{STEP_INSTRUCTION}"
        return self._chat(messages=[{"role": "user", "content": content}]).prompt

    def render_prompt(self, problem: str) -> list[int]:
        prompt = self.prompt_text(problem)
        bos = self.llm.token_bos()
        starts_with_bos = bos >= 0 and prompt.startswith(self._special_text(bos) or "\0")
        add_bos = self.llm._model.add_bos_token() and not starts_with_bos
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def tokenize_text(self, text: str) -> list[int]:
        """Plain text (no special tokens, no BOS), as appended at a hand-off."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize_text(text)) if text else 0

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            import llama_cpp

            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self.llm._model.vocab, token, buf, 64, 0, False)
            if n < 0:  # buffer too small: -n is the size needed
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.llm._model.vocab, token, buf, -n, 0, False)
            cached = self._pieces[token] = buf.raw[:n]
        return cached


class ModelFile:
    """What an engine tells of its model file, read from `self.model` (a
    Weights): identity, size, tokenizer and prompt template."""

    model: Weights

    @property
    def _llm(self) -> Llama:
        return self.model.llm

    @property
    def _weights_loaded(self) -> bool:
        return self.model.loaded

    @property
    def identity(self) -> str:
        return self.model.identity

    @property
    def params(self) -> int:
        return self.model.params

    @property
    def n_vocab(self) -> int:
        return self.model.n_vocab

    def prompt_text(self, problem: str) -> str:
        return self.model.prompt_text(problem)

    def render_prompt(self, problem: str) -> list[int]:
        return self.model.render_prompt(problem)

    def tokenize_text(self, text: str) -> list[int]:
        return self.model.tokenize_text(text)

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)


def _release_freed_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise): the
    vocabulary-only handle's ~45 MiB would stay resident for the whole run."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def gguf_param_count(path: Path) -> int:
    """Parameter count from the GGUF's tensor table (no weights read)."""
    from steer_cli.files import remembered

    return int(remembered("params", Path(path), _count_params))


def _count_params(path: Path) -> int:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return int(sum(int(t.n_elements) for t in reader.tensors))
