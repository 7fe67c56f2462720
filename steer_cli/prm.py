"""A process reward model behind HTTP, for TRIM's `prm` scorer.

The protocol is one JSON POST per drafted step:
    {"problem": str, "previous_steps": [str, ...], "step": str}
answered by {"score": float in [0, 1]} (the step's probability of being
correct). Any PRM server (vLLM reward endpoint, a small Flask wrapper) can be
put behind it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from steer_cli.errors import SteerError

TIMEOUT_S = 30.0


def score_step(url: str | None, problem: str, previous: list[str], step: str) -> float:
    if not url:
        raise SteerError("no process reward model endpoint configured", "set STEER_PRM_URL=http://host:port/score")
    body = json.dumps({"problem": problem, "previous_steps": previous, "step": step}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            reply = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise SteerError(f"PRM endpoint {url} answered HTTP {exc.code}", "check the server's log and STEER_PRM_URL") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SteerError(f"PRM endpoint {url} unreachable ({reason})", "start the reward model server or fix STEER_PRM_URL") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SteerError(f"PRM endpoint {url} did not answer JSON", 'it must reply {"score": 0.0-1.0}') from None
    score = reply.get("score") if isinstance(reply, dict) else None
    if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        raise SteerError(f"PRM endpoint {url} sent no score in [0, 1]", 'it must reply {"score": 0.0-1.0}')
    return float(score)
