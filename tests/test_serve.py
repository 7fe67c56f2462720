"""`steer serve` for real: a server process on loopback, the official openai
client, streaming and not, errors, auth, a client that leaves, and load."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx
import openai
import pytest
from serving import free_port, wait_healthy

FAST = ["--max-steps", "3", "--max-step-tokens", "6", "--threads", "1", "--n-ctx", "512"]


@pytest.fixture
def server(tiny_small, tiny_large, tmp_path):
    procs = []

    def start(*extra, env=None):
        port = free_port()
        cmd = [sys.executable, "-m", "steer_cli", "serve", "--port", str(port), "--small", str(tiny_small), "--large", str(tiny_large), *FAST, *extra]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        if wait_healthy(base, proc):
            return base, proc
        proc.kill()
        pytest.fail(f"steer serve did not start: {proc.stderr.read().decode()}")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def client(base, key="none"):
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def test_chat_completion_with_and_without_streaming(server):
    base, _ = server()
    c = client(base)
    ask = dict(model="random@0.5", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 2 + 2?"}], temperature=0, seed=1)
    full = c.chat.completions.create(**ask)
    text = full.choices[0].message.content
    steer = full.model_extra["steer"]
    assert steer["steps"] and {s["model"] for s in steer["steps"]} <= {"tiny-small", "tiny-large"}
    assert all(s["tokens"] > 0 for s in steer["steps"]) and full.usage.completion_tokens > 0
    assert steer["cost"]["relative_cost"] > 0 and full.model == "random@0.5"
    deltas, notes, last = [], [], None
    for part in c.chat.completions.create(**ask, stream=True):
        extra = part.model_extra.get("steer") or {}
        if part.choices and part.choices[0].delta.content:
            deltas.append(part.choices[0].delta.content)
            notes.append(extra)
        last = part
    assert "".join(deltas) == text  # greedy: the stream spells the same answer
    assert all("model" in n and "step" in n for n in notes)
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert last.model_extra["steer"]["answer"] == steer["answer"]
    models = [m.id for m in c.models.list().data]
    assert "small" in models and any(m.startswith("steer:") for m in models)


def test_bad_model_bad_body_and_limits_are_openai_errors(server):
    base, _ = server()
    with pytest.raises(openai.NotFoundError) as err:
        client(base).chat.completions.create(model="oracle@0.3", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    r = httpx.post(f"{base}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{base}/v1/chat/completions", json={"model": "small", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{base}/v1/chat/completions", json={"model": "small", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"})
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
    r = httpx.post(f"{base}/v1/chat/completions", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_api_key_is_required_when_set(server):
    base, _ = server("--api-key-env", "STEER_TEST_KEY", env={"STEER_TEST_KEY": "sekrit"})
    with pytest.raises(openai.AuthenticationError):
        client(base, "wrong").chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
    ok = client(base, "sekrit").chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
    assert ok.model_extra["steer"]["steps"] is not None


def test_a_client_that_leaves_mid_stream_stops_its_generation(server):
    base, _ = server("--max-steps", "24", "--max-step-tokens", "64")
    body = {"model": "large", "stream": True, "max_tokens": 1500, "messages": [{"role": "user", "content": "Count to a thousand."}]}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                break  # one piece of text, then hang up
    deadline = time.time() + 30
    while time.time() < deadline and httpx.get(f"{base}/health").json()["cancelled"] == 0:
        time.sleep(0.1)
    health = httpx.get(f"{base}/health").json()
    assert health["cancelled"] == 1 and health["queued"] == 0
    again = client(base).chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
    assert again.choices[0].finish_reason in ("stop", "length")  # the engines were freed


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def test_twenty_concurrent_requests_are_answered_or_refused_none_lost(server):
    base, proc = server("--max-queue", "4")
    post = lambda i: httpx.post(f"{base}/v1/chat/completions", json={"model": "steer", "messages": [{"role": "user", "content": f"What is {i} + 1?"}]}, timeout=120)  # noqa: E731
    post(0)
    before = rss_kib(proc.pid)
    for _ in range(2):
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            codes = [r.status_code for r in pool.map(post, range(20))]
        assert len(codes) == 20 and set(codes) <= {200, 429} and codes.count(200) >= 4
    assert all(r.json()["error"]["code"] == "queue_full" for r in [post(0)] if r.status_code == 429)
    assert rss_kib(proc.pid) - before < 50_000  # memory flat: under 50 MB of drift over 40 requests
    health = httpx.get(f"{base}/health").json()
    assert health["served"] + health["rejected"] == 41 + 1 and health["queued"] == 0
    assert json.loads(json.dumps(health))["status"] == "ok"


def test_with_parallel_concurrent_requests_share_the_passes(server):
    base, _ = server("--parallel", "4")
    ask = lambda i: client(base).chat.completions.create(model="steer@0.5", messages=[{"role": "user", "content": f"What is {i} + 2?"}])  # noqa: E731
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    assert all(a.choices[0].message.content and a.usage.completion_tokens > 0 for a in answers)
    health = httpx.get(f"{base}/health").json()
    assert health["served"] == 4 and health["parallel"] == 4
    assert health["widest_pass"] >= 2  # requests joined one another's batched passes
