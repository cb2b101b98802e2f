"""The password-checking proxy in front of the MLflow UI (studio.server.mlflow_proxy), against a small upstream
server that echoes what it receives: without the right Basic credentials nothing reaches it; with them
everything does (method, path, headers, body, status), streamed both ways."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from studio.server import auth
from studio.server.mlflow_proxy import BasicVerifier, start_proxy, stop_proxy

BIG = 5 * 1024 * 1024


class Echo(BaseHTTPRequestHandler):
    """Answers with what it got; ``/big`` streams 5 MB without a length; ``/redirect`` redirects."""

    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_any(self) -> None:
        body = self._body()
        Echo.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b"x" * 65536
            for _ in range(BIG // len(piece)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere?x=1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "body": body.decode(),
                "host": self.headers["Host"],
                "origin": self.headers.get("Origin"),
                "authorization": self.headers.get("Authorization"),
            }
        ).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "yes")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


@pytest.fixture
def upstream() -> Iterator[ThreadingHTTPServer]:
    Echo.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(studio_home: Path, upstream: ThreadingHTTPServer):
    auth.add_user("ada", "correct horse")
    running = start_proxy(
        ("127.0.0.1", 0), upstream.server_address, BasicVerifier(limiter=auth.LoginLimiter())
    )
    yield running
    stop_proxy(running)


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def request(proxy, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


CREATE = "/api/2.0/mlflow/experiments/create"


def test_without_credentials_nothing_reaches_mlflow(proxy) -> None:
    status, headers, body = request(
        proxy, "POST", CREATE, b'{"name": "x"}', {"Content-Type": "application/json"}
    )
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="Training Studio (MLflow)"')
    assert b"Log in with your Training Studio user name and password" in body
    assert request(proxy, "GET", "/", headers={"Authorization": basic("ada", "wrong")})[0] == 401
    assert request(proxy, "GET", "/", headers={"Authorization": basic("nobody", "correct horse")})[0] == 401
    assert request(proxy, "GET", "/", headers={"Authorization": "Bearer abc"})[0] == 401
    assert Echo.seen == []


def test_with_credentials_everything_is_forwarded(proxy, upstream) -> None:
    port = proxy.server_address[1]
    auth_header = {"Authorization": basic("ada", "correct horse")}
    status, headers, body = request(
        proxy,
        "POST",
        CREATE + "?a=1&b=%20",
        b'{"name": "x"}',
        {**auth_header, "Content-Type": "application/json"},
    )
    assert status == 201 and headers["X-Upstream"] == "yes"
    echoed = json.loads(body)
    assert echoed["method"] == "POST" and echoed["path"] == CREATE + "?a=1&b=%20"
    assert echoed["body"] == '{"name": "x"}'
    assert echoed["authorization"] is None  # the password goes no further than the proxy
    assert echoed["host"] == f"127.0.0.1:{upstream.server_address[1]}"
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        status, _, body = request(proxy, method, "/x", b"payload" if method != "GET" else None, auth_header)
        assert status == 200 and json.loads(body)["method"] == method
    status, headers, body = request(proxy, "HEAD", "/x", headers=auth_header)
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    # A page of this very address may change things (MLflow sees it as its own origin) ...
    status, _, body = request(
        proxy, "POST", CREATE, b"{}", {**auth_header, "Origin": f"http://127.0.0.1:{port}"}
    )
    assert status == 201 and json.loads(body)["origin"] == f"http://127.0.0.1:{upstream.server_address[1]}"
    # ... a page of another site may not, even with the browser's remembered login.
    status, _, body = request(proxy, "POST", CREATE, b"{}", {**auth_header, "Origin": "http://evil.example"})
    assert status == 403 and body == b"Cross-origin request blocked.\n"
    # Redirects to MLflow's own address point back at the proxy.
    status, headers, _ = request(
        proxy, "GET", "/redirect", headers={**auth_header, "Host": f"studio.lan:{port}"}
    )
    assert status == 302 and headers["Location"] == f"http://studio.lan:{port}/elsewhere?x=1"


def test_bodies_stream_both_ways(proxy) -> None:
    auth_header = {"Authorization": basic("ada", "correct horse")}
    chunks = (b"part-%d;" % n for n in range(1000))  # sent chunked: no length known in advance
    status, _, body = request(proxy, "POST", "/upload", chunks, auth_header)
    assert status == 201
    assert json.loads(body)["body"] == "".join(f"part-{n};" for n in range(1000))
    status, headers, body = request(proxy, "GET", "/big", headers=auth_header)
    assert status == 200 and len(body) == BIG and headers.get("Transfer-Encoding") == "chunked"


def test_wrong_passwords_are_limited_per_client(proxy) -> None:
    wrong = {"Authorization": basic("ada", "guess")}
    assert [request(proxy, "GET", "/", headers=wrong)[0] for _ in range(4)] == [401] * 4
    status, headers, body = request(proxy, "GET", "/", headers=wrong)
    assert status == 429 and headers["Retry-After"] == "30"
    assert body == b"Too many wrong passwords from this computer: try again in 30 s.\n"
    status, _, body = request(proxy, "GET", "/", headers={"Authorization": basic("ada", "correct horse")})
    assert status == 429  # even the right password waits
    assert Echo.seen == []


def test_the_right_password_is_checked_once_then_remembered_until_the_file_changes(
    proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = []
    real = auth._scrypt
    monkeypatch.setattr(auth, "_scrypt", lambda *a: hashed.append(1) or real(*a))
    good = {"Authorization": basic("ada", "correct horse")}
    assert [request(proxy, "GET", "/", headers=good)[0] for _ in range(5)] == [200] * 5
    assert len(hashed) == 1
    auth.remove_user("ada")
    auth.add_user("bob", "battery staple")
    assert request(proxy, "GET", "/", headers=good)[0] == 401


def test_mlflow_not_answering_is_a_plain_502(studio_home: Path) -> None:
    auth.add_user("ada", "correct horse")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    running = start_proxy(
        ("127.0.0.1", 0), ("127.0.0.1", closed_port), BasicVerifier(limiter=auth.LoginLimiter())
    )
    try:
        status, _, body = request(
            running, "GET", "/", headers={"Authorization": basic("ada", "correct horse")}
        )
    finally:
        stop_proxy(running)
    assert status == 502 and b"The MLflow UI is not answering" in body
