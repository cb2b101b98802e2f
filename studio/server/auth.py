"""Who may use the studio: users with salted scrypt hashes in a password file, password checks in
constant time, a limit on wrong passwords per client, and the idle timeout of a logged-in session.

The password file (``STUDIO_PASSWORD_FILE``, default ``users`` in the studio's data folder) holds one
line per user, ``name:scrypt$N$r$p$salt$key``; ``python -m studio users add NAME`` writes it. The
standard library is enough (hashlib's scrypt, hmac's constant-time compare), and nothing heavy is
imported: the CLI, the Streamlit app and serve's MLflow proxy all use this module.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import StudioError

PASSWORD_FILE_ENV = "STUDIO_PASSWORD_FILE"
PASSWORD_FILE_NAME = "users"
LOGIN_ENV = "STUDIO_LOGIN"  # "1": the app asks for a password (``serve`` sets it)
IDLE_ENV = "STUDIO_LOGIN_IDLE_HOURS"
DEFAULT_IDLE_HOURS = 8.0
MIN_PASSWORD_LENGTH = 8
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")

# scrypt with N=2**15, r=8, p=1: 32 MiB and about 0.1 s per check on one core, so guessing is slow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 2**26
SALT_BYTES = 16
KEY_BYTES = 32
# At most this many hashes at once per process: each needs 32 MiB, and a flood of logins must not
# take the server's memory.
_HASHING = threading.BoundedSemaphore(2)


class AuthError(StudioError):
    """A user name, password or login setting cannot be used; the message says why."""


# --------------------------------------------------------------------------- hashes
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _HASHING:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=KEY_BYTES
        )


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, as stored in the password file."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def check_password(password: str, record: str) -> bool:
    """Whether ``password`` matches a stored hash (constant-time compare; a malformed record never matches)."""
    try:
        scheme, n, r, p, salt, key = record.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = base64.b64decode(key, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):  # also scrypt's refusal of impossible parameters
        return False
    return hmac.compare_digest(actual, expected)


_dummy_record: str | None = None


def _dummy() -> str:
    """A hash of a random password, checked for unknown names so the time taken does not reveal them."""
    global _dummy_record
    if _dummy_record is None:
        _dummy_record = hash_password(secrets.token_urlsafe(16))
    return _dummy_record


# --------------------------------------------------------------------------- the password file
def password_file() -> Path:
    """Where the users are kept: ``STUDIO_PASSWORD_FILE``, else ``users`` in the studio's data folder."""
    given = os.environ.get(PASSWORD_FILE_ENV, "").strip()
    if given:
        return Path(given).expanduser().resolve()
    from studio.core.settings import studio_home

    return studio_home() / PASSWORD_FILE_NAME


def read_users(path: Path | None = None) -> dict[str, str]:
    """``{name: stored hash}`` from the password file (empty when it does not exist)."""
    path = path or password_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise AuthError(f"Cannot read the password file {path} ({err.strerror}).") from err
    users: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, record = line.strip().partition(":")
        if sep and NAME_PATTERN.fullmatch(name):
            users[name] = record
    return users


def _write_users(users: dict[str, str], path: Path) -> None:
    """Replace the password file at once (a reader sees the old file or the new one), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Training Studio users: name:scrypt$N$r$p$salt$hash (python -m studio users add NAME)"]
    lines += [f"{name}:{record}" for name, record in sorted(users.items())]
    handle, temp = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def check_name(name: str) -> str:
    """``name`` if it can be a user name, else :class:`AuthError` saying what is allowed."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise AuthError(
            f"'{name}' cannot be a user name: use 1 to 64 letters, digits, dots, dashes, underscores or '@'."
        )
    return name


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if password != password.strip() or "\n" in password:
        raise AuthError("The password cannot start or end with a space or hold a line break.")
    return password


def add_user(name: str, password: str, path: Path | None = None) -> bool:
    """Add a user, or set the password of an existing one. Returns True when the user is new."""
    check_name(name)
    check_new_password(password)
    path = path or password_file()
    record = hash_password(password)
    users = read_users(path)
    new = name not in users
    users[name] = record
    _write_users(users, path)
    return new


def ensure_user(name: str, password: str, path: Path | None = None) -> str:
    """Make ``name`` log in with ``password`` (for ``STUDIO_PASSWORD`` at start-up); says what changed.

    An existing user whose password already matches is left as it is (no new salt on every start).
    """
    check_name(name)
    check_new_password(password)
    path = path or password_file()
    record = read_users(path).get(name)
    if record is not None and check_password(password, record):
        return "unchanged"
    return "added" if add_user(name, password, path) else "changed"


def remove_user(name: str, path: Path | None = None) -> None:
    path = path or password_file()
    users = read_users(path)
    if name not in users:
        known = ", ".join(sorted(users)) or "none yet"
        raise AuthError(f"There is no user '{name}' (users: {known}).")
    del users[name]
    _write_users(users, path)


def list_users(path: Path | None = None) -> list[str]:
    return sorted(read_users(path))


def verify(name: str, password: str, path: Path | None = None) -> bool:
    """Whether ``name`` logs in with ``password``. An unknown name costs the same hash as a known one."""
    dummy = _dummy()  # made before the look-up, so even the first try takes as long either way
    record = read_users(path).get(name)
    if record is None:
        check_password(password, dummy)
        return False
    return check_password(password, record)


def fingerprint(name: str, path: Path | None = None) -> str | None:
    """A digest of the user's stored hash (None when the user is gone): a session made with another one
    ends, so removing a user or changing their password logs them out."""
    record = read_users(path).get(name)
    return None if record is None else hashlib.sha256(record.encode()).hexdigest()


# --------------------------------------------------------------------------- wrong passwords
class LoginLimiter:
    """Wrong passwords per client (an IP address): after ``free_tries`` of them each further try waits,
    30 s at first and twice as long after every wrong one, up to ``max_delay``. A right password, or
    ``forget_after`` seconds without a wrong one, clears the count. Thread-safe; state is per process."""

    def __init__(
        self,
        free_tries: int = 5,
        first_delay: float = 30.0,
        max_delay: float = 900.0,
        forget_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.free_tries, self.first_delay, self.max_delay = free_tries, first_delay, max_delay
        self.forget_after, self.clock, self.max_clients = forget_after, clock, max_clients
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[int, float, float]] = {}  # client -> (failures, last, blocked until)

    def _current(self, client: str, now: float) -> tuple[int, float, float]:
        entry = self._clients.get(client)
        if entry and now - entry[1] > self.forget_after and now >= entry[2]:
            del self._clients[client]
            return (0, now, now)
        return entry or (0, now, now)

    def wait_seconds(self, client: str) -> float:
        """How long ``client`` must wait before the next try (0: it may try now)."""
        with self._lock:
            now = self.clock()
            return max(0.0, self._current(client, now)[2] - now)

    def failed(self, client: str) -> float:
        """Count a wrong password; returns how long ``client`` must now wait (0 while tries are left)."""
        with self._lock:
            now = self.clock()
            failures = self._current(client, now)[0] + 1
            delay = 0.0
            if failures >= self.free_tries:
                delay = min(self.max_delay, self.first_delay * 2 ** (failures - self.free_tries))
            if len(self._clients) >= self.max_clients:
                self._prune(now)
            self._clients[client] = (failures, now, now + delay)
            return delay

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _prune(self, now: float) -> None:
        stale = [
            c
            for c, (_, last, until) in self._clients.items()
            if now - last > self.forget_after and now >= until
        ]
        for client in stale:
            del self._clients[client]
        if len(self._clients) >= self.max_clients:  # a flood of addresses: keep the ones blocked longest
            for client, _ in sorted(self._clients.items(), key=lambda item: item[1][2])[
                : len(self._clients) // 2
            ]:
                del self._clients[client]


LIMITER = LoginLimiter()


def wait_words(seconds: float) -> str:
    """``30 s`` or ``4 min``, rounded up."""
    seconds = math.ceil(seconds)
    return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def too_many_message(seconds: float) -> str:
    return f"Too many wrong passwords from this computer: try again in {wait_words(seconds)}."


WRONG_PASSWORD = "Wrong user name or password."


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    message: str = ""


def try_login(
    client: str, name: str, password: str, limiter: LoginLimiter | None = None, path: Path | None = None
) -> LoginResult:
    """Check a login from ``client`` (the process-wide :data:`LIMITER` counts its wrong passwords unless
    another is given): refused without a check while the client must wait."""
    limiter = limiter or LIMITER
    wait = limiter.wait_seconds(client)
    if wait > 0:
        return LoginResult(False, too_many_message(wait))
    if verify(name, password, path):
        limiter.succeeded(client)
        return LoginResult(True)
    wait = limiter.failed(client)
    return LoginResult(False, too_many_message(wait) if wait > 0 else WRONG_PASSWORD)


# --------------------------------------------------------------------------- sessions and exposure
def idle_timeout_seconds() -> float:
    """How long a logged-in session may stay unused (``STUDIO_LOGIN_IDLE_HOURS``, default 8 hours)."""
    given = os.environ.get(IDLE_ENV, "").strip()
    if not given:
        return DEFAULT_IDLE_HOURS * 3600
    try:
        hours = float(given)
    except ValueError:
        hours = -1.0
    if not 0 < hours < 24 * 365 or not math.isfinite(hours):
        raise AuthError(f"{IDLE_ENV} must be a number of hours above 0, like 8 (it is '{given}').")
    return hours * 3600


def idle_words(seconds: float) -> str:
    """``8 hours``, ``30 minutes`` or ``1 hour``."""
    minutes = round(seconds / 60)
    if minutes >= 60 and minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{max(minutes, 1)} minute{'s' if minutes != 1 else ''}"


def login_forced() -> bool:
    """Whether ``serve`` asked the app to require a login (``STUDIO_LOGIN=1``)."""
    return os.environ.get(LOGIN_ENV, "").strip() == "1"


def is_loopback(host: str | None) -> bool:
    """Whether a server bound to ``host`` is reachable only from this computer.

    An empty host (every interface), a name that does not resolve, or one that resolves to any other
    address counts as reachable from elsewhere.
    """
    host = (host or "").strip().strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in found)
