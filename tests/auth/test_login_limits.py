"""Wrong passwords per client and the idle timeout (studio.server.auth), on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.server import auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> auth.LoginLimiter:
    return auth.LoginLimiter(clock=clock)


def test_five_wrong_passwords_then_a_wait_that_doubles(limiter: auth.LoginLimiter, clock: Clock) -> None:
    assert [limiter.failed("10.0.0.7") for _ in range(4)] == [0, 0, 0, 0]
    assert limiter.wait_seconds("10.0.0.7") == 0
    assert limiter.failed("10.0.0.7") == 30
    assert limiter.wait_seconds("10.0.0.7") == 30
    assert limiter.wait_seconds("10.0.0.8") == 0  # another computer is not held up
    clock.now += 31
    assert limiter.wait_seconds("10.0.0.7") == 0
    assert limiter.failed("10.0.0.7") == 60
    clock.now += 61
    assert limiter.failed("10.0.0.7") == 120
    for _ in range(10):
        clock.now += 1000
        delay = limiter.failed("10.0.0.7")
    assert delay == 900  # at most 15 minutes


def test_a_right_password_or_an_hour_of_quiet_clears_the_count(
    limiter: auth.LoginLimiter, clock: Clock
) -> None:
    for _ in range(4):
        limiter.failed("a")
    limiter.succeeded("a")
    assert limiter.failed("a") == 0
    for _ in range(3):
        limiter.failed("a")
    clock.now += 3601
    assert [limiter.failed("a") for _ in range(4)] == [0, 0, 0, 0]


def test_many_clients_do_not_grow_the_memory_without_bound(clock: Clock) -> None:
    limiter = auth.LoginLimiter(clock=clock, max_clients=100)
    for number in range(1000):
        limiter.failed(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter._clients) <= 100


def test_try_login_refuses_without_checking_while_the_client_waits(
    studio_home: Path, limiter: auth.LoginLimiter, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.add_user("ada", "correct horse")
    results = [auth.try_login("10.0.0.7", "ada", f"guess {n}", limiter) for n in range(5)]
    assert [r.message for r in results] == [auth.WRONG_PASSWORD] * 4 + [
        "Too many wrong passwords from this computer: try again in 30 s."
    ]
    checked = []
    monkeypatch.setattr(auth, "verify", lambda *a: checked.append(a) or True)
    clock.now += 10
    refused = auth.try_login("10.0.0.7", "ada", "correct horse", limiter)
    assert refused == auth.LoginResult(
        False, "Too many wrong passwords from this computer: try again in 20 s."
    )
    assert checked == []  # no hash is computed while the client must wait
    clock.now += 20
    assert auth.try_login("10.0.0.7", "ada", "correct horse", limiter).ok


@pytest.mark.parametrize(
    ("seconds", "words"), [(30, "30 s"), (0.2, "1 s"), (119, "119 s"), (120, "2 min"), (900, "15 min")]
)
def test_waits_read_in_seconds_then_minutes(seconds: float, words: str) -> None:
    assert auth.wait_words(seconds) == words


def test_the_idle_timeout_defaults_to_8_hours_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.IDLE_ENV, raising=False)
    assert auth.idle_timeout_seconds() == 8 * 3600
    assert auth.idle_words(8 * 3600) == "8 hours"
    monkeypatch.setenv(auth.IDLE_ENV, "0.5")
    assert auth.idle_timeout_seconds() == 1800
    assert auth.idle_words(1800) == "30 minutes"
    for bad in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv(auth.IDLE_ENV, bad)
        with pytest.raises(auth.AuthError, match="STUDIO_LOGIN_IDLE_HOURS must be a number of hours above 0"):
            auth.idle_timeout_seconds()
