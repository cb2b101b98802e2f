"""The MLflow UI behind a password: a small reverse proxy that ``serve`` puts on the public MLflow port
when the studio asks for a login.

``mlflow ui`` then listens on 127.0.0.1 only, on a free port; this proxy listens where the MLflow UI
would have, checks HTTP Basic credentials against the studio's users (:mod:`studio.server.auth`: the same
password file, the same limit on wrong passwords per client) and forwards everything else (method,
path, headers, body, status) to it, streaming bodies both ways. Without the right credentials the
answer is 401 with ``WWW-Authenticate``, so a browser asks for the user name and password.

The studio's training workers write to the tracking store directly, never through this port.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from studio.server import auth

REALM = "Training Studio (MLflow)"
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 300.0
CLIENT_TIMEOUT = 120.0
CACHE_SECONDS = 300.0
CACHE_SIZE = 256
# Headers that belong to one connection, not to the message (RFC 9110 7.6.1), plus the credentials.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(name, password)`` from an ``Authorization: Basic …`` header, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    name, sep, password = text.partition(":")
    return (name, password) if sep else None


class BasicVerifier:
    """Checks Basic credentials with :func:`studio.server.auth.try_login`, remembering the right ones for a few
    minutes: a browser sends them with every request, and each full check costs a slow hash.

    Only a keyed digest of the credentials is kept (the key lives in this process's memory), and only
    while the password file is unchanged: removing a user or changing a password takes effect at once.
    """

    def __init__(self, path: Path | None = None, limiter: auth.LoginLimiter | None = None) -> None:
        self.path = path or auth.password_file()
        self.limiter = limiter or auth.LoginLimiter()
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._known: dict[bytes, tuple[float, tuple[int, int, int] | None]] = {}

    def _file_state(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def check(self, client: str, name: str, password: str) -> auth.LoginResult:
        digest = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        state, now = self._file_state(), time.monotonic()
        with self._lock:
            known = self._known.get(digest)
        if known is not None and known[0] > now and known[1] == state:
            return auth.LoginResult(True)
        result = auth.try_login(client, name, password, self.limiter, self.path)
        with self._lock:
            if result.ok:
                if len(self._known) >= CACHE_SIZE:
                    self._known.clear()
                self._known[digest] = (now + CACHE_SECONDS, state)
            else:
                self._known.pop(digest, None)
        return result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TrainingStudio"
    timeout = CLIENT_TIMEOUT
    server: AuthProxy

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # the MLflow UI's own log records the requests

    def handle_request(self) -> None:
        client = self.client_address[0]
        credentials = parse_basic(self.headers.get("Authorization", ""))
        if credentials is None:
            wait = self.server.verifier.limiter.wait_seconds(client)
            if wait > 0:
                return self._refuse(429, auth.too_many_message(wait), retry_after=wait)
            return self._refuse(401, "Log in with your Training Studio user name and password.")
        result = self.server.verifier.check(client, *credentials)
        if not result.ok:
            wait = self.server.verifier.limiter.wait_seconds(client)
            if wait > 0:
                return self._refuse(429, result.message, retry_after=wait)
            return self._refuse(401, result.message)
        if self.command in STATE_CHANGING and not self._same_origin():
            return self._refuse(403, "Cross-origin request blocked.")
        self._forward()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_request

    # ----------------------------------------------------------------------- answers of the proxy itself
    def _refuse(self, status: int, message: str, retry_after: float = 0) -> None:
        body = (message + "\n").encode()
        self.close_connection = True  # the request body (if any) is not read
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
        if retry_after:
            self.send_header("Retry-After", str(int(retry_after + 0.999)))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _same_origin(self) -> bool:
        """Whether a request that changes something comes from a page of this very address (or from
        no page at all, like ``curl``): a site elsewhere cannot use a browser's remembered login."""
        origin = self.headers.get("Origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc.lower() == (self.headers.get("Host") or "").lower()

    # ----------------------------------------------------------------------- forwarding
    def _forward(self) -> None:
        upstream_host, upstream_port = self.server.upstream
        upstream_base = f"http://{upstream_host}:{upstream_port}"
        conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=UPSTREAM_TIMEOUT)
        try:
            try:
                self._send_request(conn, upstream_base)
                response = conn.getresponse()
            except OSError:
                if self.wfile.closed:
                    return
                return self._refuse(
                    502, "The MLflow UI is not answering (it may still be starting); try again soon."
                )
            self._send_response(response, upstream_base)
        finally:
            conn.close()

    def _send_request(self, conn: http.client.HTTPConnection, upstream_base: str) -> None:
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = None if chunked else int(self.headers.get("Content-Length") or 0)
        connection_tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        for name, value in self.headers.items():
            lower = name.lower()
            if (
                lower in HOP_BY_HOP
                or lower in connection_tokens
                or lower in ("host", "authorization", "content-length", "expect")
            ):
                continue
            if lower == "origin" and self._same_origin():
                value = upstream_base  # MLflow trusts its own address; this proxy checked the real one
            conn.putheader(name, value)
        # MLflow checks the Host header against its own list; the proxy has checked the caller already.
        conn.putheader("Host", upstream_base.removeprefix("http://"))
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif length:
            conn.putheader("Content-Length", str(length))
        conn.endheaders()
        if chunked:
            for piece in self._chunked_body():
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        elif length:
            left = length
            while left > 0:
                piece = self.rfile.read(min(CHUNK, left))
                if not piece:
                    raise ConnectionError("the client stopped sending the request body")
                conn.send(piece)
                left -= len(piece)

    def _chunked_body(self):
        while True:
            size_line = self.rfile.readline(1024)
            if not size_line:
                raise ConnectionError("the client stopped sending the request body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers are dropped
                return
            left = size
            while left > 0:
                piece = self.rfile.read(min(CHUNK, left))
                if not piece:
                    raise ConnectionError("the client stopped sending the request body")
                left -= len(piece)
                yield piece
            self.rfile.readline(8)  # the CRLF after each chunk

    def _send_response(self, response: http.client.HTTPResponse, upstream_base: str) -> None:
        self.send_response_only(response.status, response.reason)
        connection_tokens = {t.strip().lower() for t in (response.getheader("Connection") or "").split(",")}
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens or lower == "content-length":
                continue
            if lower == "location" and value.startswith(upstream_base):
                value = f"http://{self.headers.get('Host', '')}{value[len(upstream_base) :]}"
            self.send_header(name, value)
        if no_body:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        if length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            while piece := response.read(CHUNK):
                self.wfile.write(piece)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while piece := response.read1(CHUNK):  # as soon as it arrives: streamed answers stay live
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class AuthProxy(ThreadingHTTPServer):
    """The proxy server: ``serve_forever()`` in a thread, ``shutdown()`` and ``server_close()`` to stop."""

    daemon_threads = True

    def __init__(
        self,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        verifier: BasicVerifier | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.upstream = upstream
        self.verifier = verifier or BasicVerifier()
        super().__init__(listen, _Handler)

    def handle_error(self, request, client_address) -> None:
        """A browser that goes away mid-answer is normal; anything else is printed as usual."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def start_proxy(
    listen: tuple[str, int], upstream: tuple[str, int], verifier: BasicVerifier | None = None
) -> AuthProxy:
    """Listen on ``listen`` and forward authenticated requests to ``upstream``, in a background thread."""
    proxy = AuthProxy(listen, upstream, verifier)
    threading.Thread(target=proxy.serve_forever, name="mlflow-auth-proxy", daemon=True).start()
    return proxy


def stop_proxy(proxy: AuthProxy | None) -> None:
    if proxy is not None:
        proxy.shutdown()
        proxy.server_close()
