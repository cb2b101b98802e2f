"""Users and their password hashes (studio.server.auth): salted scrypt in a file only its owner reads, constant-time
checks, the same slow hash for a name that does not exist."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from studio.server import auth


@pytest.fixture
def users_file(studio_home: Path) -> Path:
    return studio_home / "users"


def test_the_password_file_lives_in_the_studio_folder_unless_one_is_named(
    studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(auth.PASSWORD_FILE_ENV, raising=False)
    assert auth.password_file() == studio_home.resolve() / "users"
    monkeypatch.setenv(auth.PASSWORD_FILE_ENV, str(tmp_path / "elsewhere" / "people"))
    assert auth.password_file() == tmp_path / "elsewhere" / "people"


def test_added_users_are_stored_as_salted_hashes_readable_only_by_the_owner(users_file: Path) -> None:
    assert auth.add_user("ada", "correct horse") is True
    assert auth.add_user("bob", "correct horse") is True
    text = users_file.read_text()
    assert "correct horse" not in text
    records = auth.read_users()
    assert set(records) == {"ada", "bob"}
    assert records["ada"].startswith("scrypt$32768$8$1$")
    assert records["ada"] != records["bob"]  # same password, different salt
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert auth.list_users() == ["ada", "bob"]


def test_verify_takes_the_right_password_only(users_file: Path) -> None:
    auth.add_user("ada", "correct horse")
    assert auth.verify("ada", "correct horse")
    assert not auth.verify("ada", "correct horsE")
    assert not auth.verify("ada", "")
    assert not auth.verify("Ada", "correct horse")
    assert auth.add_user("ada", "battery staple") is False  # a new password for the same user
    assert not auth.verify("ada", "correct horse")
    assert auth.verify("ada", "battery staple")


def test_an_unknown_name_costs_the_same_hash_and_compare_as_a_known_one(
    users_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.add_user("ada", "correct horse")
    hashed, compared = [], []
    real_scrypt, real_compare = auth._scrypt, auth.hmac.compare_digest
    monkeypatch.setattr(auth, "_scrypt", lambda *a: hashed.append(a[2:]) or real_scrypt(*a))
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: compared.append(1) or real_compare(a, b))
    auth._dummy()  # made once per process, not per try
    hashed.clear()
    started = time.perf_counter()
    assert not auth.verify("nobody", "correct horse")
    unknown = time.perf_counter() - started
    started = time.perf_counter()
    assert not auth.verify("ada", "wrong password")
    known = time.perf_counter() - started
    assert hashed == [(auth.SCRYPT_N, auth.SCRYPT_R, auth.SCRYPT_P)] * 2
    assert len(compared) == 2
    assert 0.2 < unknown / known < 5, (unknown, known)  # the same slow hash (loose: shared CPUs)


def test_remove_and_bad_names_say_what_is_wrong(users_file: Path) -> None:
    auth.add_user("ada", "correct horse")
    auth.add_user("bob", "correct horse")
    auth.remove_user("bob")
    assert auth.list_users() == ["ada"]
    with pytest.raises(auth.AuthError, match=r"^There is no user 'bob' \(users: ada\)\.$"):
        auth.remove_user("bob")
    for bad in ("", "a:b", "two words", "x" * 65, "line\nbreak"):
        with pytest.raises(auth.AuthError, match="cannot be a user name"):
            auth.add_user(bad, "correct horse")
    with pytest.raises(auth.AuthError, match="at least 8 characters"):
        auth.add_user("carl", "short")
    assert auth.list_users() == ["ada"]


def test_a_damaged_line_never_logs_anyone_in(users_file: Path) -> None:
    auth.add_user("ada", "correct horse")
    users_file.write_text(
        users_file.read_text() + "eve:plain-text-password\nmallory:scrypt$1$1$1$AAAA$AAAA\n\nnonsense\n"
    )
    assert auth.list_users() == ["ada", "eve", "mallory"]
    assert not auth.verify("eve", "plain-text-password")
    assert not auth.verify("mallory", "")
    assert auth.verify("ada", "correct horse")


def test_the_fingerprint_changes_with_the_password_and_vanishes_with_the_user(users_file: Path) -> None:
    auth.add_user("ada", "correct horse")
    first = auth.fingerprint("ada")
    assert first and auth.fingerprint("ada") == first
    auth.add_user("ada", "battery staple")
    assert auth.fingerprint("ada") not in (None, first)
    auth.remove_user("ada")
    assert auth.fingerprint("ada") is None


def test_ensure_user_keeps_a_matching_hash(users_file: Path) -> None:
    assert auth.ensure_user("admin", "correct horse") == "added"
    record = auth.read_users()["admin"]
    assert auth.ensure_user("admin", "correct horse") == "unchanged"
    assert auth.read_users()["admin"] == record
    assert auth.ensure_user("admin", "battery staple") == "changed"
    assert auth.verify("admin", "battery staple")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        (None, False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("no-such-host.invalid", False),
    ],
)
def test_which_addresses_count_as_this_computer_only(host, loopback) -> None:
    assert auth.is_loopback(host) is loopback
