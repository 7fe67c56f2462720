"""A remote tier for real: llama-cpp-python's own OpenAI-compatible server on
loopback serves SmolLM2 as the large model; the small one is local."""

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from steer_cli.cli import app

runner = CliRunner()
FAST = ["--max-steps", "3", "--max-step-tokens", "24", "--threads", "1", "--n-ctx", "1024"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# llama-cpp-python's own server, with steer's guard against llama.cpp's AMX kernels (weights.avoid_amx),
# which crash on AMX CPUs: without it this suite fails on such a machine, for a reason that is not steer's.
SERVER = ("import runpy, sys; from steer_cli.weights import avoid_amx; avoid_amx(); "
          "sys.argv[0] = 'llama_cpp.server'; runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")


class Server:
    def __init__(self, model, port):
        self.model, self.port, self.proc = model, port, None
        self.base = f"http://127.0.0.1:{port}/v1"

    def start(self):
        cmd = [sys.executable, "-c", SERVER, "--model", str(self.model), "--model_alias", "smol", "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.base}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        pytest.fail("llama_cpp.server did not start")

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def remote(smollm2_path, tmp_path, monkeypatch):
    server = Server(smollm2_path, free_port()).start()
    home = tmp_path / "steer-home"
    home.mkdir(exist_ok=True)
    (home / "models.yaml").write_text(
        "models:\n"
        f"  smol-local: {{file: {smollm2_path.name}, n_ctx: 1024, sources: {{path: '{smollm2_path}'}}}}\n"
        "  smol-remote:\n"
        "    params: 134515008\n"
        "    price: {input_per_m: 0.10, output_per_m: 0.40}\n"
        f"    sources: {{endpoint: {{base_url: '{server.base}', model: smol, template_from: smol-local}}}}\n"
    )
    yield server
    server.stop()


def ask(*args):
    return runner.invoke(app, ["ask", *args])


@pytest.mark.parametrize("router", ["steer:entropy@0.9", "random@0.5", "cascade@0.999", "trim:verify@0.9"])
def test_routers_run_with_a_remote_large_tier(remote, tiny_small, router):
    name, _, threshold = router.partition("@")
    name, _, signal = name.partition(":")
    args = ["What is 2 + 3?", "--small", str(tiny_small), "--large", "smol-remote", "--router", name, "-t", threshold, "--json", "-q", *FAST]
    r = ask(*args, *(["--signal", signal] if signal else []))
    assert r.exit_code in (0, 1), r.stderr  # 1: no answer stated, said in one line
    out = json.loads(r.stdout)
    remote_cost = out["cost"]["models"][1]
    assert remote_cost["name"] == "smol-remote" and remote_cost["prefill_tokens"] > 0
    assert remote_cost["price_usd"] > 0 and out["cost"]["price_usd"] == pytest.approx(remote_cost["price_usd"])  # the local tier bills $0
    if name != "trim":
        assert any(s["model"] == "smol-remote" for s in out["steps"] + out["drafts"]) or name == "random"


def test_remote_prompt_logprobs_match_the_local_engine(remote, smollm2_path):
    from steer_cli.engine import LlamaEngine, LoadOptions
    from steer_cli.registry import load_registry
    from steer_cli.tiers import build_tiers

    (engine,) = build_tiers(tiers=None, small="smol-remote", large="smol-remote", registry=load_registry(), options=LoadOptions(n_threads=1))[:1]
    local = LlamaEngine("local", smollm2_path, LoadOptions(n_threads=1, n_ctx=1024))
    draft = "First, 2 + 3 = 5.\n\n"
    for e in (engine, local):
        e.start("What is 2 + 3?")
    got, want = engine.score_text(draft), local.score_text(draft)
    assert len(got) == len(want) == local.count_tokens(draft)
    assert max(abs(a - b) for a, b in zip(got, want)) < 0.25  # kernels differ (batched vs logits_all), the tokens do not


def test_a_dead_server_mid_batch_is_one_line_and_the_rerun_resumes(remote, tiny_small, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?"}) + "\n" for i in range(6)))
    cmd = [sys.executable, "-m", "steer_cli", "batch", str(src), "-o", str(out), "-q", "--small", str(tiny_small), "--large", "smol-remote", "--router", "large", *FAST]
    env = {**os.environ}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    remote.stop()  # the server dies mid-batch
    _, err = proc.communicate(timeout=120)
    done = out.read_text().count("\n")
    assert proc.returncode == 1 and 2 <= done < 6
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and remote.base in lines[0] and "Traceback" not in err
    remote.start()
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == [f"q{i}" for i in range(6)]


def test_a_server_without_prompt_logprobs_is_refused_not_trusted():
    """llama.cpp's llama-server answers echo + logprobs with the generated token only: TRIM
    verify must say so, not score an empty list (which would accept every draft)."""
    from steer_cli.errors import SteerError
    from steer_cli.registry import EndpointSource
    from steer_cli.remote import RemoteEngine

    def reply(request):
        body = {"choices": [{"text": "x", "finish_reason": "length", "logprobs": {"tokens": [" x"], "token_logprobs": [-0.5], "text_offset": [99]}}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 1}}
        return httpx.Response(200, json=body)

    client = httpx.Client(base_url="http://llama-server.test/v1", transport=httpx.MockTransport(reply))
    engine = RemoteEngine("remote", EndpointSource(base_url="http://llama-server.test/v1", model="m"), 10**9, client=client, chat_template="{{ messages[0]['content'] }}")
    engine.start("What is 2 + 3?")
    with pytest.raises(SteerError, match="no prompt log-probs.*routers that work there"):
        engine.score_text("First, 2 + 3 = 5.\n\n")
    assert engine.stats.prefill_tokens == 30 and engine.stats.decoded_tokens == 1  # the call is still paid for


def test_a_remote_tier_under_parallel_keeps_each_problem_its_own(remote, tiny_small, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?"}) + "\n" for i in range(4)))
    r = runner.invoke(app, ["batch", str(src), "-o", str(out), "-q", "--small", str(tiny_small), "--large", "smol-remote", "--router", "random@0.5", "--parallel", "3", *FAST])
    assert r.exit_code == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(rec["id"] for rec in records) == [f"q{i}" for i in range(4)]
    for rec in records:  # each problem's remote bill is the tokens of its own steps
        remote_cost = rec["cost"]["models"][1]
        wrote = sum(s["tokens"] for s in rec["steps"] if s["model"] == "smol-remote")
        assert remote_cost["decoded_tokens"] >= wrote and (wrote == 0 or remote_cost["prefill_tokens"] > 0)
