"""Passwords: scrypt (RFC 7914) hashes in a users file, checked through twisted.cred."""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from zope.interface import implementer

from rtmpserver.handlers.auth._common import (
    _SCRYPT_HASH,
    _SCRYPT_MAX_MEMORY,
    _USER,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    _b64,
    _unb64,
)
from rtmpserver.handlers.auth.files import (
    FileProblem,
    _lines,
)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P, salt: bytes | None = None) -> str:
    """``$scrypt$n=N,r=R,p=P$SALT$HASH`` (base64url, no padding) for a users file."""
    salt = salt if salt is not None else _secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=_SCRYPT_MAX_MEMORY)
    return f"$scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(h)}"


@dataclass(frozen=True)
class _Scrypt:
    n: int
    r: int
    p: int
    salt: bytes
    hash: bytes

    def verify(self, password: bytes) -> bool:
        h = hashlib.scrypt(password, salt=self.salt, n=self.n, r=self.r, p=self.p, dklen=32, maxmem=_SCRYPT_MAX_MEMORY)
        return hmac.compare_digest(h, self.hash)


def _parse_scrypt(text: str) -> _Scrypt:
    m = _SCRYPT_HASH.fullmatch(text)
    if not m:
        raise ValueError("expected USER:$scrypt$n=N,r=R,p=P$SALT$HASH (see 'python -m rtmpserver.handlers.auth passwd')")
    n, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if n < 2 or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of two, got {n}")
    if not (1 <= r <= 64 and 1 <= p <= 16) or 128 * r * n > _SCRYPT_MAX_MEMORY // 2:
        raise ValueError(f"scrypt parameters n={n}, r={r}, p={p} are out of range")
    return _Scrypt(n, r, p, _unb64(m.group(4)), _unb64(m.group(5)))


def parse_users_file(text: str, path: str) -> dict[str, _Scrypt]:
    users: dict[str, _Scrypt] = {}
    for n, line in _lines(text):
        user, sep, rest = line.partition(":")
        if not sep or not _USER.fullmatch(user):
            raise FileProblem(f"{path}:{n}: expected USER:HASH with a user name of 1-64 letters, digits or ._@-")
        if user in users:
            raise FileProblem(f"{path}:{n}: user {user!r} appears on an earlier line too")
        try:
            users[user] = _parse_scrypt(rest)
        except ValueError as e:
            raise FileProblem(f"{path}:{n}: {e}") from None
    return users


# Checked when the user is unknown, so that a wrong name costs as much time as a wrong password.
_DUMMY = _Scrypt(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"\0" * 16, b"\0" * 32)


@implementer(ICredentialsChecker)
class ScryptUsersChecker:
    """A twisted.cred checker for ``USER:$scrypt$...`` files; the avatar id is the user name.

    ``run(f, *args)`` runs the (slow, by design) scrypt call and returns a Deferred; the handler
    passes one that uses the reactor's thread pool so that logins do not stall every stream.
    ``concurrency`` bounds how many run at once (each holds 16 MiB while it runs).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users: Callable[[], Mapping[str, _Scrypt]], run: Callable[..., defer.Deferred] | None = None, concurrency: int = 2) -> None:
        self._users = users
        self._run = run or (lambda f, *a: defer.maybeDeferred(f, *a))
        self._limit = defer.DeferredSemaphore(concurrency)

    def requestAvatarId(self, credentials: Any) -> defer.Deferred:
        username = credentials.username
        password = credentials.password
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        if isinstance(password, str):
            password = password.encode("utf-8")
        entry = self._users().get(username)
        known = entry is not None
        d = self._limit.run(self._run, (entry or _DUMMY).verify, password)

        def done(ok: bool) -> Any:
            if ok and known:
                return username
            raise UnauthorizedLogin("unknown user or wrong password")

        return d.addCallback(done)
