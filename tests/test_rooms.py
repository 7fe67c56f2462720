"""The rooms hold: a router with a trained file, added as one module and one
registry entry (tests/plugins/toy_router.py), runs in ask, eval and serve; one
place builds a Solver; the import graph has no cycle and runs one way."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from steer_cli.cli import app

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))
import toy_router  # noqa: E402,F401 - registers the toy router, as an installed plugin would

runner = CliRunner()
PACKAGE = Path(__file__).parent.parent / "steer_cli"


def models(tiny_small, tiny_large) -> list[str]:
    return ["--small", str(tiny_small), "--large", str(tiny_large), "--threads", "1", "--n-ctx", "512", "--max-steps", "3", "--max-step-tokens", "4"]


@pytest.fixture
def pattern(tmp_path) -> Path:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps({"pattern": [1, 0, 1]}))
    return path


def tiers(steps: list[dict]) -> list[int]:
    return [s["tier"] for s in steps]


@pytest.mark.slow
def test_a_plugin_router_with_a_trained_file_runs_in_ask(tiny_small, tiny_large, pattern):
    r = runner.invoke(app, ["ask", "What is 2 + 2?", "--router", "toy", "--trained", f"toy={pattern}", "--json", "-q", *models(tiny_small, tiny_large)])
    result = json.loads(r.stdout)
    assert result["router"] == "toy" and len(result["steps"]) >= 2
    assert tiers(result["steps"]) == [1, 0, 1][: len(result["steps"])]


def test_a_plugin_router_without_its_file_is_refused_before_any_model_loads():
    r = runner.invoke(app, ["ask", "What is 2 + 2?", "--router", "toy", "--small", "/nonexistent.gguf"])
    assert r.exit_code == 2 and "needs a trained toy file" in r.stderr and "--trained toy=FILE" in r.stderr


@pytest.mark.slow
def test_a_plugin_router_runs_in_eval(tiny_small, tiny_large, pattern, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n" for i in range(2)))
    r = runner.invoke(app, ["eval", "--routers", "small,toy@0.5", "--data", str(data), "--trained", f"toy={pattern}", "--work", str(tmp_path / "w"),
                            "--json", "-q", *models(tiny_small, tiny_large)])
    assert r.exit_code == 0, r.stderr
    assert [s["config"] for s in json.loads(r.stdout)] == ["small", "toy@0.5"]
    (records,) = (tmp_path / "w").glob("toy@0.5-*.jsonl")
    for line in records.read_text().splitlines():
        steps = json.loads(line)["steps"]
        assert tiers(steps) == [1, 0, 1][: len(steps)]


def test_a_plugin_router_is_in_the_help_of_every_command_that_routes():
    env = {**os.environ, "STEER_PLUGINS": "toy_router", "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    for command in ("ask", "batch"):
        shown = subprocess.run([sys.executable, "-m", "steer_cli", command, "--help"], capture_output=True, text=True, env={**env, "COLUMNS": "400"})
        assert shown.returncode == 0 and "toy" in shown.stdout.split("--router")[1][:2000], shown.stdout[-600:]


@pytest.mark.slow
def test_a_plugin_router_is_served_when_its_file_is_given(tiny_small, tiny_large, pattern):
    from serving import free_port, wait_healthy

    port = free_port()
    env = {**os.environ, "STEER_PLUGINS": "toy_router", "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "steer_cli", "serve", "--port", str(port), "--trained", f"toy={pattern}", *models(tiny_small, tiny_large)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        assert proc.poll() is None, proc.stderr.read().decode()
        listed = [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]]
        assert "toy@0.5" in listed
        body = {"model": "toy", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
        steps = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60).json()["steer"]["steps"]
        assert tiers(steps) == [1, 0, 1][: len(steps)] and len(steps) >= 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _imports() -> dict[str, set[str]]:
    """steer_cli's modules and the steer_cli modules each imports (lazy imports too)."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_the_import_graph_has_no_cycle_and_nothing_imports_the_commands():
    graph = _imports()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module in done:
            return
        for target in graph[module]:
            visit(target, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())
    shell = {m for m in graph if m.startswith("steer_cli.commands") or m in ("steer_cli.cli", "steer_cli.__main__")}
    assert not [(m, t) for m in graph if m not in shell for t in graph[m] if t in shell]


def test_one_place_builds_a_solver_and_the_shared_command_room_stays_small():
    sources = [p for p in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "benchmarks").rglob("*.py")]]
    builders = [p.name for p in sources for line in p.read_text().splitlines() if "Solver(" in line and not line.lstrip().startswith(("#", "class "))]
    assert builders == ["session.py"]
    assert len((PACKAGE / "commands" / "common.py").read_text().splitlines()) <= 120


def test_no_class_over_200_lines_and_no_command_function_over_50():
    """Long rooms split by job: a class stays under 200 lines, a command's body (after its docstring) under 50."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 200:
                long.append(f"{path.name}:{node.name}")
            if isinstance(node, ast.FunctionDef) and path.parent.name == "commands":
                body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) and len(node.body) > 1 else node.body
                if node.end_lineno - body[0].lineno + 1 > 50:
                    long.append(f"{path.name}:{node.name}()")
    assert not long
