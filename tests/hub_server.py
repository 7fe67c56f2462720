"""A loopback server speaking the part of the Hugging Face Hub protocol that
`hf_hub_download` uses: HEAD/GET /{repo}/resolve/{revision}/{file} with the
X-Repo-Commit, X-Linked-Etag and X-Linked-Size headers."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}  # "repo/revision/file" -> (body, etag)
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _lookup(self):
                hub.requests.append(f"{self.command} {self.path}")
                repo_rev, sep, file = self.path.partition("/resolve/")
                if not sep:
                    return None
                revision, _, name = file.partition("/")
                return hub.files.get(f"{repo_rev.strip('/')}/{revision}/{name}")

            def _headers(self, found) -> None:
                body, etag = found
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(len(body)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()

            def do_HEAD(self) -> None:
                found = self._lookup()
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self._headers(found)

            def do_GET(self) -> None:
                found = self._lookup()
                if found is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self._headers(found)
                self.wfile.write(found[0])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, repo: str, revision: str, name: str, body: bytes, etag: str | None = None) -> str:
        """Serve `body`; the etag defaults to its true sha256 (as the hub's LFS does)."""
        sha = hashlib.sha256(body).hexdigest()
        self.files[f"{repo}/{revision}/{name}"] = (body, etag or sha)
        return sha

    def __enter__(self) -> Hub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
