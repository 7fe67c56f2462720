"""serve's request handling, in-process on scripted engines: every error is
the OpenAI error object, and a fuzzed body of any shape gets an error object
or a completion while the server stays healthy."""

import json

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import ScriptedEngine
from steer_cli.serve import Server, create_app
from steer_cli.session import Session

USER = [{"role": "user", "content": "What is 2 + 2?"}]


def client() -> TestClient:
    engines = [ScriptedEngine("small").enqueue("2 + 2 = 4\n\n", "\\boxed{4}"), ScriptedEngine("large")]
    return TestClient(create_app(Server(Session.of(engines), max_queue=4, timeout_s=30)))


CLIENT = client()


def error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str) and body["error"]["type"]
    return body["error"]


def test_a_request_without_a_model_is_refused_as_the_api_requires():
    e = error(CLIENT.post("/v1/chat/completions", json={"messages": USER}), 400)
    assert "'model' is required" in e["message"] and e["code"] == "invalid_model"


def test_an_unknown_model_speaks_http_not_cli():
    e = error(CLIENT.post("/v1/chat/completions", json={"model": "gpt-4", "messages": USER}), 404)
    assert e["code"] == "model_not_found" and "--router" not in e["message"] and "/v1/models" in e["message"]


def test_stream_must_be_a_boolean_and_max_tokens_an_integer_with_plain_bounds():
    assert error(CLIENT.post("/v1/chat/completions", json={"model": "small", "messages": USER, "stream": "yes"}), 400)["code"] == "invalid_stream"
    e = error(CLIENT.post("/v1/chat/completions", json={"model": "small", "messages": USER, "max_tokens": 3.7}), 400)
    assert "must be an integer" in e["message"]
    e = error(CLIENT.post("/v1/chat/completions", json={"model": "small", "messages": USER, "max_tokens": 10**9}), 400)
    assert "[1, 1048576]" in e["message"] and "e+" not in e["message"]


def test_wrong_method_and_unknown_path_are_error_objects():
    assert error(CLIENT.get("/v1/chat/completions"), 405)["type"] == "invalid_request_error"
    assert error(CLIENT.get("/v1/nothing-here"), 404)["type"] == "not_found_error"


def test_a_valid_request_is_answered():
    r = CLIENT.post("/v1/chat/completions", json={"model": "small", "messages": USER})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
FIELDS = ["model", "messages", "stream", "max_tokens", "temperature", "seed", "n", "stop"]
BODY = st.one_of(
    JSON,
    st.fixed_dictionaries({}, optional={f: JSON for f in FIELDS}),
    st.fixed_dictionaries({"model": st.sampled_from(["small", "large", "steer", "trim:verify@0.8", "steer@", "cascade+pik"]), "messages": st.just(USER)},
                          optional={f: JSON for f in FIELDS[2:]}),
)


def _check(r) -> None:
    if r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"):
        for line in r.text.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                payload = json.loads(line[6:])
                assert "choices" in payload or "error" in payload
        return
    body = r.json()
    if r.status_code == 200:
        assert body["object"] == "chat.completion" and body["choices"]
    else:
        assert 400 <= r.status_code < 600 and set(body) == {"error"} and isinstance(body["error"]["message"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODY)
def test_any_body_gets_an_error_object_or_a_completion(body):
    _check(CLIENT.post("/v1/chat/completions", content=json.dumps(body, allow_nan=True), headers={"content-type": "application/json"}))
    assert CLIENT.get("/health").json()["status"] == "ok"


def test_the_default_model_is_the_configured_route():
    listed = [m["id"] for m in CLIENT.get("/v1/models").json()["data"]]
    assert listed[0] == "default" and "mix@0.5" in listed
    r = CLIENT.post("/v1/chat/completions", json={"model": "default", "messages": USER})
    assert r.status_code == 200 and r.json()["model"] == "steer:maxprob@0.5"  # Defaults(): router steer, its own threshold and signal
