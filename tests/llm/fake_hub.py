"""A Hugging Face Hub on 127.0.0.1 for the tests (no internet): it answers the requests huggingface_hub
makes for ``model_info`` (with ``?blobs=True``, the files' sizes), ``snapshot_download`` (the repository's
tree) and the files themselves (``/{id}/resolve/{revision}/{file}``), from repositories held in memory, and
records every request, so a test sees what was asked and which bytes went out."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]], gated: tuple[str, ...] = ()) -> None:
        self.repos = repos
        self.gated = gated
        self.requests: list[tuple[str, str]] = []
        self.sent: dict[str, int] = {}
        """Bytes of each file's body sent (``id/file``)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _send(
                self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False
            ) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, data: object) -> None:
                self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _answer(self, head: bool) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                hub.requests.append(("HEAD" if head else "GET", self.path))
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo = "/".join(parts[2:4])
                    if repo in hub.gated:
                        return self._send(401, b'{"error":"gated"}', {"X-Error-Code": "GatedRepo"})
                    files = hub.repos.get(repo)
                    if files is None:
                        return self._send(
                            404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}
                        )
                    if len(parts) > 4 and parts[4] == "tree":
                        return self._json(
                            [
                                {
                                    "type": "file",
                                    "path": n,
                                    "size": len(b),
                                    "oid": hashlib.sha1(b).hexdigest(),
                                }
                                for n, b in files.items()
                            ]
                        )
                    blobs = "blobs" in parse_qs(url.query)
                    siblings = []
                    for name, body in files.items():
                        sibling: dict = {"rfilename": name}
                        if blobs:
                            sibling.update(size=len(body), blobId=hashlib.sha1(body).hexdigest())
                            if name.endswith((".safetensors", ".bin", ".onnx")):  # as the Hub: LFS files
                                sha = hashlib.sha256(body).hexdigest()
                                sibling["lfs"] = {"sha256": sha, "size": len(body), "pointerSize": 134}
                        siblings.append(sibling)
                    return self._json({"id": repo, "sha": COMMIT, "siblings": siblings})
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                    body = hub.repos.get(repo, {}).get(name)
                    if body is None:
                        return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                    if not head:
                        hub.sent[f"{repo}/{name}"] = hub.sent.get(f"{repo}/{name}", 0) + len(body)
                    etag = '"' + hashlib.sha1(body).hexdigest() + '"'
                    return self._send(200, body, {"X-Repo-Commit": COMMIT, "ETag": etag}, head)
                return self._send(404, b"", {}, head)

        return Handler


def repository_of(folder: Path, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """A model folder's files as a repository's, with ``extra`` files beside them."""
    files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
    return {**files, **(extra or {})}
