"""``auth``: stream keys, signed URLs and passwords for publish and play.

Three ways to prove a client may publish or play, chosen per action by ``auth.publish`` and
``auth.play`` (docs/handlers.md has the user's view):

- ``key``: a static key from the config or a key file.  OBS and most encoders have a single
  "stream key" field whose text becomes the stream name, so the name itself may be the key, and
  ``auth.stream_keys = alice:KEY`` publishes under ``alice`` so that the key never becomes a name
  players, logs or stat pages see.  ``name?key=KEY`` (or ``?token=``) and a key in the connect URL
  (``rtmp://host/app?key=KEY``) work too.
- ``signed``: an HMAC-SHA256 link with an expiry, made by ``sign_url`` (or the CLI below) from a
  secret shared with whatever hands out links.  The action is part of the signed text, so a
  player's link cannot be used to publish.
- ``user``: ``?user=NAME&pass=PASSWORD`` checked by a ``twisted.cred`` checker against an
  scrypt-hashed users file.

Secrets are compared with ``hmac.compare_digest`` on fixed-length digests, never logged, and never
passed on: the ``key``/``token``/``sign``/``pass`` arguments are removed from the request that the
rest of the chain sees.

CLI::

    python -m rtmpserver.handlers.auth sign --secret-file S --app live --name cam --ttl 3600
    python -m rtmpserver.handlers.auth passwd alice < password.txt
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
import re
import secrets as _secrets
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import ConfigError, Rejected
from rtmpserver.handlers.access import client_address
from rtmpserver.interfaces import IAppHandler, IAppHandlerFactory

__all__ = [
    "AuthHandler", "AuthFactory", "factory", "sign_url", "signed_string", "hash_password",
    "ScryptUsersChecker", "KeyStore", "main",
]

MODES = ("key", "signed", "user")
_CODES = {"publish": "NetStream.Publish.Denied", "play": "NetStream.Play.Failed"}

# Keys use only RFC 3986 "unreserved" characters (section 2.3): they survive unchanged as a stream
# name, inside ?key=..., in a URL and in OBS's stream-key field.  '+' would turn into a space in a
# query string, '&', '=', '?' and '#' would split it.
_KEY = re.compile(r"[A-Za-z0-9._~-]{1,512}", re.ASCII)
_STREAM_NAME = re.compile(r"[A-Za-z0-9._~@+/-]{1,256}", re.ASCII)
_USER = re.compile(r"[A-Za-z0-9._@-]{1,64}", re.ASCII)
_LIST_SEPARATOR = re.compile(r"[\s,]+")
_EXPIRES = re.compile(r"[0-9]{1,12}", re.ASCII)
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_B64_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}=?", re.ASCII)
MIN_SECRET_LENGTH = 16
MAX_FILE_BYTES = 4 * 1024 * 1024

# scrypt (RFC 7914) cost: N=2^14, r=8, p=1 is the interactive-login setting of the RFC's section 2
# and of Python's hashlib documentation; 16 MiB and tens of milliseconds per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_SCRYPT_MAX_MEMORY = 256 * 1024 * 1024
_SCRYPT_HASH = re.compile(r"\$scrypt\$n=([0-9]{1,8}),r=([0-9]{1,3}),p=([0-9]{1,3})\$([A-Za-z0-9_-]{16,128})\$([A-Za-z0-9_-]{43})", re.ASCII)


def _digest(text: str) -> bytes:
    """Keys are compared as SHA-256 digests so that compare_digest sees equal lengths and the
    comparison time says nothing about a key's length."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------------------------------
# Signed URLs


def signed_string(action: str, app: str, name: str, expires: int, ip: str | None = None) -> str:
    """The exact text that is signed: ``{action}/{app}/{name}?expires={expires}[&ip={ip}]``.

    ``name`` is the stream name as the client sends it, without its ``?query``; ``ip`` is the
    client address in canonical form (``str(ipaddress.ip_address(...))``, IPv4-mapped IPv6 as IPv4).
    """
    text = f"{action}/{app}/{name}?expires={expires}"
    if ip is not None:
        text += f"&ip={ip}"
    return text


def _signature(secret: str, text: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def sign_url(secret: str, app: str, name: str, expires: int, ip: str | None = None, *, action: str = "publish") -> str:
    """Query string ``expires=UNIX&sign=HEX`` that lets ``action`` (publish or play) ``app/name``
    until ``expires`` (UNIX seconds), from address ``ip`` if given (``auth.bind_ip = yes``).

    Append it to the stream name: ``rtmp://host/live/cam?expires=...&sign=...``.
    """
    if action not in _CODES:
        raise ValueError(f"action must be publish or play, got {action!r}")
    if ip is not None:
        addr = client_address(ip)
        if addr is None:
            raise ValueError(f"ip must be an IP address, got {ip!r}")
        ip = str(addr)
    sig = _signature(secret, signed_string(action, app, name, int(expires), ip)).hex()
    return f"expires={int(expires)}&sign={sig}"


def _decode_signature(text: str) -> bytes | None:
    """Lower- or upper-case hex (64 digits) or unpadded/padded base64url (43/44 characters)."""
    if _HEX_SIGNATURE.fullmatch(text):
        return bytes.fromhex(text)
    if _B64_SIGNATURE.fullmatch(text):
        try:
            raw = _unb64(text.rstrip("="))
        except (binascii.Error, ValueError):
            return None
        return raw if len(raw) == 32 else None
    return None


# --------------------------------------------------------------------------------------------------
# Files that are re-read when they change


class FileProblem(Exception):
    """A key or users file that cannot be used; the message names file and line."""


class WatchedFile:
    """A small file parsed at startup and again whenever its mtime, size or inode changes.

    Operators rotate keys by editing the file; replacing it atomically (write, then rename) is
    what makes a half-written file impossible.  A file that disappears or stops parsing revokes
    everything it held (fail closed) until it is fixed, and the problem is logged once.
    """

    _log = Logger()

    def __init__(self, path: str, parse: Callable[[str, str], Any], empty: Any) -> None:
        self.path = path
        self._parse = parse
        self._empty = empty
        self._stamp: tuple | None = None
        self.value: Any = empty
        self.broken: str | None = None

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

    def _read(self) -> Any:
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise FileProblem(f"{self.path}: cannot read: {e.strerror or e}") from None
        if len(data) > MAX_FILE_BYTES:
            raise FileProblem(f"{self.path}: larger than {MAX_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FileProblem(f"{self.path}: not UTF-8 text (bad byte at offset {e.start})") from None
        return self._parse(text, self.path)

    def load(self) -> None:
        """First load: problems raise FileProblem (the caller turns it into a ConfigError)."""
        self._stamp = self._stat()
        self.value = self._read()
        self.broken = None

    def current(self) -> Any:
        stamp = self._stat()
        if stamp == self._stamp and stamp is not None:
            return self.value
        self._stamp = stamp
        try:
            if stamp is None:
                raise FileProblem(f"{self.path}: cannot read: file not found")
            self.value = self._read()
        except FileProblem as e:
            self.value = self._empty
            if str(e) != self.broken:
                self._log.error("{problem}; everything it held is refused until it is fixed", problem=str(e))
            self.broken = str(e)
            return self.value
        if self.broken:
            self._log.info("{path} is usable again", path=self.path)
        else:
            self._log.info("{path} changed; reloaded", path=self.path)
        self.broken = None
        return self.value


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def parse_keys_file(text: str, path: str, allow_name: bool = True) -> list[tuple[bytes, str | None]]:
    """One key per line, or (publish keys) ``NAME:KEY`` to publish under NAME; ``#`` starts a
    comment line."""
    entries: list[tuple[bytes, str | None]] = []
    seen: set[bytes] = set()
    for n, line in _lines(text):
        try:
            digest, name = _parse_key_entry(line, allow_name)
        except ValueError as e:
            raise FileProblem(f"{path}:{n}: {e}") from None
        if digest in seen:
            raise FileProblem(f"{path}:{n}: this key appears on an earlier line too")
        seen.add(digest)
        entries.append((digest, name))
    return entries


def _parse_key_entry(item: str, allow_name: bool) -> tuple[bytes, str | None]:
    """``KEY`` or ``NAME:KEY``; the error never contains the key itself."""
    name = None
    key = item
    if ":" in item:
        if not allow_name:
            raise ValueError("expected a key (letters, digits, '-', '_', '.', '~'), found ':'")
        name, _, key = item.partition(":")
        if not _STREAM_NAME.fullmatch(name):
            raise ValueError(f"expected NAME:KEY with a stream name of letters, digits and ._~@+/- , got name {name[:40]!r}")
    if not _KEY.fullmatch(key):
        raise ValueError(f"a key must be 1-512 letters, digits, '-', '_', '.' or '~' (this one has {len(key)} characters)")
    return _digest(key), name


class KeyStore:
    """The keys accepted for one action: static entries plus key files, in a fixed order."""

    def __init__(self, static: list[tuple[bytes, str | None]], files: list[WatchedFile]) -> None:
        self.static = static
        self.files = files

    def __bool__(self) -> bool:
        return bool(self.static or self.files)

    def lookup(self, presented: str) -> tuple[bool, str | None]:
        """(matched, stream name the key publishes under or None).

        Every entry is compared, without stopping at the first match, so the time taken does not
        say where (or whether) the key was found.
        """
        d = _digest(presented)
        found = False
        name: str | None = None
        entries = list(self.static)
        for f in self.files:
            entries.extend(f.current())
        for digest, mapped in entries:
            if hmac.compare_digest(digest, d) and not found:
                found, name = True, mapped
        return found, name


# --------------------------------------------------------------------------------------------------
# Passwords (twisted.cred)


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


# --------------------------------------------------------------------------------------------------
# The handler


@dataclass(frozen=True)
class Policy:
    """How one action (publish or play) is authorised."""

    action: str
    modes: tuple[str, ...]  # empty: no check
    keys: KeyStore | None = None
    name_as_key: bool = False  # publish only: the stream name itself may be the key


class _Refused(Exception):
    """One mode did not accept the request; the message is for the log (never holds a secret)."""


def _play_keys_file(text: str, path: str) -> list[tuple[bytes, str | None]]:
    return parse_keys_file(text, path, allow_name=False)


def _pick(request: Any, names: tuple[str, ...]) -> tuple[str | None, str | None, str]:
    """The first of ``names`` present in the stream name's arguments, then in the connect URL's.

    Returns (argument name, value, where).
    """
    for where, args in (("stream name", request.args), ("connect URL", request.session.connect_params.get("args") or {})):
        for n in names:
            if n in args:
                v = args[n]
                return n, v if isinstance(v, str) else None, where
    return None, None, ""


def _without(args: Mapping[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in args.items() if k not in names}


@implementer(IAppHandler)
class AuthHandler:
    _log = Logger()

    def __init__(
        self,
        app: str,
        policies: Mapping[str, Policy],
        clock: Any,
        secret: str | None = None,
        bind_ip: bool = False,
        checker: ScryptUsersChecker | None = None,
    ) -> None:
        self.app = app
        self.policies = dict(policies)
        self.clock = clock
        self._secret = secret
        self.bind_ip = bind_ip
        self.checker = checker

    def __repr__(self) -> str:  # never show the secret
        return f"<AuthHandler app={self.app} publish={self.policies['publish'].modes} play={self.policies['play'].modes}>"

    # -- modes -----------------------------------------------------------------------------

    def _by_key(self, policy: Policy, request: Any) -> tuple[Any, str, bool]:
        arg, key, where = _pick(request, ("key", "token"))
        assert policy.keys is not None
        if arg is not None:
            found, mapped = policy.keys.lookup(key or "")
            if not found:
                raise _Refused(f"wrong key in ?{arg}= of the {where}")
            new = dataclasses.replace(request, name=mapped or request.name, args=_without(request.args, "key", "token"))
            return new, f"key from the {where}" + (f", publishing as {mapped}" if mapped else ""), False
        if policy.name_as_key:
            found, mapped = policy.keys.lookup(request.name)
            if found:
                # The name was the key: only a mapped name may appear in logs and stat pages.
                how = f"stream key, publishing as {mapped}" if mapped else "stream name is a key"
                return dataclasses.replace(request, name=mapped or request.name), how, True
            raise _Refused("no ?key= and the stream name is not a key")
        raise _Refused("no ?key= in the stream name or connect URL")

    def _by_signature(self, policy: Policy, request: Any) -> tuple[Any, str, bool]:
        assert self._secret is not None
        where, args = "stream name", request.args
        if "sign" not in args:
            where, args = "connect URL", request.session.connect_params.get("args") or {}
        sign, expires = args.get("sign"), args.get("expires")
        if not isinstance(sign, str):
            raise _Refused("no ?sign= in the stream name or connect URL")
        if not isinstance(expires, str) or not _EXPIRES.fullmatch(expires):
            raise _Refused(f"missing or malformed ?expires= in the {where}")
        presented = _decode_signature(sign)
        if presented is None:
            raise _Refused(f"malformed ?sign= in the {where}")
        ip = None
        if self.bind_ip:
            addr = client_address(request.session.host)
            if addr is None:
                raise _Refused("bind_ip is on and the client address is not an IP address")
            ip = str(addr)
        text = signed_string(policy.action, request.app, request.name, int(expires), ip)
        if not hmac.compare_digest(_signature(self._secret, text), presented):
            raise _Refused("bad signature" + (" (or signed for another address)" if ip else ""))
        now = self.clock.seconds()
        if now > int(expires):
            raise _Refused(f"signature expired {now - int(expires):.0f} s ago")
        return dataclasses.replace(request, args=_without(request.args, "sign")), "signed URL", False

    # -- hooks -----------------------------------------------------------------------------

    def _decide(self, action: str, request: Any, proceed: Any) -> Any:
        policy = self.policies[action]
        if not policy.modes:
            return proceed(request)
        reasons: list[str] = []
        for mode in policy.modes:
            if mode == "user":
                continue
            try:
                new, how, name_is_key = (self._by_key if mode == "key" else self._by_signature)(policy, request)
            except _Refused as e:
                reasons.append(f"{mode}: {e}")
                continue
            self._accepted(action, request, new, how, name_is_key)
            return proceed(new)
        if "user" in policy.modes:
            return self._by_user(action, policy, request, proceed, reasons)
        raise self._rejection(action, request, policy, reasons)

    def _by_user(self, action: str, policy: Policy, request: Any, proceed: Any, reasons: list[str]) -> defer.Deferred:
        assert self.checker is not None
        arg, user, uwhere = _pick(request, ("user",))
        parg, password, pwhere = _pick(request, ("pass",))
        if user is None or password is None:
            reasons.append("user: no ?user= and ?pass=")
            raise self._rejection(action, request, policy, reasons)
        d = self.checker.requestAvatarId(UsernamePassword(user.encode("utf-8", "surrogatepass"), password.encode("utf-8", "surrogatepass")))

        def ok(avatar: str) -> Any:
            new = dataclasses.replace(request, args=_without(request.args, "pass"))
            request.session.data["auth.user"] = avatar
            self._accepted(action, request, new, f"user {avatar}", False)
            return proceed(new)

        def bad(f: Any) -> Any:
            f.trap(UnauthorizedLogin)
            reasons.append(f"user: unknown user or wrong password for {user[:64]!r}")
            raise self._rejection(action, request, policy, reasons)

        return d.addCallbacks(ok, bad)

    def _accepted(self, action: str, request: Any, new: Any, how: str, name_is_key: bool) -> None:
        # A name that was itself the key (OBS's "stream key" field) never goes into a log line.
        name = "<stream key>" if name_is_key and new.name == request.name else new.name
        self._log.info(
            "{peer}: {action} {app}/{name} allowed by auth ({how})",
            peer=request.session.peer, action=action, app=request.app, name=name, how=how,
        )

    def _rejection(self, action: str, request: Any, policy: Policy, reasons: list[str]) -> Rejected:
        self._log.info(
            "{peer}: {action} {app}/{name} refused by auth: {reasons}",
            peer=request.session.peer, action=action, app=request.app,
            # The refused name may be a mistyped key: keep it out of the log when names can be keys.
            name="<stream name>" if policy.name_as_key else request.name, reasons="; ".join(reasons),
        )
        what = {"key": "a valid stream key", "signed": "a valid signed URL", "user": "a valid user name and password"}
        needed = " or ".join(what[m] for m in policy.modes)
        verb = "Publishing" if action == "publish" else "Playing"
        return Rejected(_CODES[action], f"{verb} needs {needed}.")

    def connect(self, request: Any, proceed: Any) -> Any:
        return proceed(request)

    def publish(self, request: Any, proceed: Any) -> Any:
        return self._decide("publish", request, proceed)

    def play(self, request: Any, proceed: Any) -> Any:
        return self._decide("play", request, proceed)

    def close_stream(self, event: Any) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# Configuration


_KNOWN = (
    "publish", "play", "publish_keys", "publish_keys_file", "stream_keys", "play_keys", "play_keys_file",
    "secret", "secret_file", "bind_ip", "users_file",
)
_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}


def _show(text: str, limit: int = 60) -> str:
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return f"'{text}'"


class _Settings:
    """Reads one app's ``auth.*`` keys, every problem a ConfigError naming file, app and key."""

    def __init__(self, settings: Mapping[str, str], context: Any) -> None:
        self.s = dict(settings)
        self.where = f"{context.server.path}: [app:{context.app.name}] auth"
        self.base = os.path.dirname(os.path.abspath(context.server.path))

    def error(self, key: str, expected: str, value: str | None = None, secret: bool = False) -> ConfigError:
        """``<path>: [app:<app>] auth.<key>: <expected>, got '<value>'``; a secret's value is
        never shown (the message goes to the terminal and to logs)."""
        if value is None:
            value = self.s.get(key, "")
        shown = f"a value of {len(value)} characters (not shown: it is secret)" if secret else _show(value)
        return ConfigError(f"{self.where}.{key}: {expected}, got {shown}")

    def unused(self, key: str, why: str) -> ConfigError:
        # Settings that nothing checks look like protection and are none: refuse to start.
        return ConfigError(f"{self.where}.{key}: is set, but {why}; remove it or enable the check")

    def modes(self, key: str, default: str) -> tuple[str, ...]:
        text = self.s.get(key, default)
        words = [w for w in _LIST_SEPARATOR.split(text) if w]
        expected = "expected none, or one or more of key, signed, user"
        if words == ["none"]:
            return ()
        if not words or any(w not in MODES for w in words) or len(set(words)) != len(words):
            raise self.error(key, expected, text)
        return tuple(words)

    def path(self, key: str) -> str:
        text = self.s[key]
        if not text:
            raise self.error(key, "expected a file name")
        return os.path.join(self.base, text)

    def watched(self, key: str, parse: Callable[[str, str], Any], empty: Any) -> WatchedFile:
        wf = WatchedFile(self.path(key), parse, empty)
        try:
            wf.load()
        except FileProblem as e:
            raise ConfigError(f"{self.where}.{key}: {e}") from None
        return wf

    def key_list(self, key: str, allow_name: bool) -> list[tuple[bytes, str | None]]:
        text = self.s[key]
        items = [w for w in _LIST_SEPARATOR.split(text) if w]
        form = "NAME:KEY pairs" if allow_name else "keys"
        if not items:
            raise self.error(key, f"expected one or more {form} separated by spaces or commas", secret=True)
        out: list[tuple[bytes, str | None]] = []
        for i, item in enumerate(items, 1):
            if allow_name and ":" not in item:
                raise self.error(key, f"entry {i}: expected NAME:KEY", secret=True)
            try:
                out.append(_parse_key_entry(item, allow_name))
            except ValueError as e:
                raise self.error(key, f"entry {i}: {e}", secret=True) from None
        return out

    def keystore(self, action: str) -> tuple[KeyStore, list[str]]:
        static: list[tuple[bytes, str | None]] = []
        files: list[WatchedFile] = []
        used: list[str] = []
        names = ("stream_keys", "publish_keys", "publish_keys_file") if action == "publish" else ("play_keys", "play_keys_file")
        for key in names:
            if key not in self.s:
                continue
            used.append(key)
            if key.endswith("_file"):
                files.append(self.watched(key, parse_keys_file if action == "publish" else _play_keys_file, []))
            else:
                static.extend(self.key_list(key, allow_name=(key == "stream_keys")))
        seen: set[bytes] = set()
        for digest, _ in static + [e for f in files for e in f.value]:
            if digest in seen:
                raise ConfigError(
                    f"{self.where}.{used[-1]}: a key is given twice (in {', '.join('auth.' + u for u in used)})"
                )
            seen.add(digest)
        return KeyStore(static, files), used

    def secret(self) -> str | None:
        if "secret" in self.s and "secret_file" in self.s:
            raise self.error("secret_file", "expected either auth.secret or auth.secret_file, not both")
        if "secret" in self.s:
            value = self.s["secret"]
            key = "secret"
        elif "secret_file" in self.s:
            key = "secret_file"
            path = self.path(key)
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_FILE_BYTES + 1)
                value = data.decode("utf-8").strip()
            except OSError as e:
                raise ConfigError(f"{self.where}.{key}: cannot read {path}: {e.strerror or e}") from None
            except UnicodeDecodeError:
                raise ConfigError(f"{self.where}.{key}: {path} is not UTF-8 text") from None
        else:
            return None
        if len(value) < MIN_SECRET_LENGTH:
            raise self.error(key, f"expected a secret of at least {MIN_SECRET_LENGTH} characters", value, secret=True)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.s:
            return default
        try:
            return _BOOLEANS[self.s[key].lower()]
        except KeyError:
            raise self.error(key, "expected yes/no, true/false, on/off or 1/0") from None


@implementer(IAppHandlerFactory, IPlugin)
class AuthFactory:
    name = "auth"
    description = "stream keys, signed expiring URLs and passwords for publish and play"

    def build(self, settings: Mapping[str, str], context: Any) -> AuthHandler:
        cfg = _Settings(settings, context)
        for key in settings:
            if key not in _KNOWN:
                raise ConfigError(f"{cfg.where}.{key}: unknown key (known keys: {', '.join(_KNOWN)})")
        modes = {"publish": cfg.modes("publish", "key"), "play": cfg.modes("play", "none")}
        uses = {m: [a for a in modes if m in modes[a]] for m in MODES}

        policies: dict[str, Policy] = {}
        for action in ("publish", "play"):
            store, given = cfg.keystore(action)
            if "key" in modes[action]:
                if not store:
                    want = "auth.stream_keys, auth.publish_keys or auth.publish_keys_file" if action == "publish" else "auth.play_keys or auth.play_keys_file"
                    raise cfg.error(action, f"'key' needs {want}", " ".join(modes[action]))
            elif given:
                raise cfg.unused(given[0], f"auth.{action} does not include 'key'")
            keyed = "key" in modes[action]
            policies[action] = Policy(action, modes[action], store if keyed else None, name_as_key=keyed and action == "publish")

        secret = cfg.secret()
        if uses["signed"] and secret is None:
            raise cfg.error(uses["signed"][0], "'signed' needs auth.secret or auth.secret_file", " ".join(modes[uses["signed"][0]]))
        if not uses["signed"]:
            for key in ("secret", "secret_file", "bind_ip"):
                if key in settings:
                    raise cfg.unused(key, "neither auth.publish nor auth.play includes 'signed'")
        bind_ip = cfg.boolean("bind_ip", False)

        checker = None
        if uses["user"]:
            if "users_file" not in settings:
                raise cfg.error(uses["user"][0], "'user' needs auth.users_file", " ".join(modes[uses["user"][0]]))
            users = cfg.watched("users_file", parse_users_file, {})
            checker = ScryptUsersChecker(users.current, _thread_runner(context.reactor))
        elif "users_file" in settings:
            raise cfg.unused("users_file", "neither auth.publish nor auth.play includes 'user'")

        if not modes["publish"] and not modes["play"]:
            raise cfg.error("publish", "expected auth.publish or auth.play to require key, signed or user (both are none)", "none")
        return AuthHandler(context.app.name, policies, context.clock, secret, bind_ip, checker)


def _thread_runner(reactor: Any) -> Callable[..., defer.Deferred] | None:
    """Run scrypt in the reactor's thread pool (hashlib releases the GIL while it works)."""
    if reactor is None or not hasattr(reactor, "getThreadPool"):
        return None
    from twisted.internet.threads import deferToThreadPool

    return lambda f, *a: deferToThreadPool(reactor, reactor.getThreadPool(), f, *a)


factory = AuthFactory()


# --------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None, out: Any = None, stdin: Any = None, now: Callable[[], float] = time.time) -> int:
    out = out or sys.stdout
    stdin = stdin or sys.stdin
    parser = argparse.ArgumentParser(prog="python -m rtmpserver.handlers.auth", description="Helpers for the auth handler.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sign", help="print the query string of a signed URL")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--secret", help="the shared secret (visible in the process list: prefer --secret-file)")
    g.add_argument("--secret-file", help="file holding the secret (as auth.secret_file)")
    s.add_argument("--app", required=True)
    s.add_argument("--name", required=True, help="stream name, without ?query")
    t = s.add_mutually_exclusive_group(required=True)
    t.add_argument("--ttl", type=int, help="seconds from now until the link expires")
    t.add_argument("--expires", type=int, help="UNIX time at which the link expires")
    s.add_argument("--action", choices=("publish", "play"), default="publish")
    s.add_argument("--ip", help="bind to this client address (for auth.bind_ip = yes)")
    p = sub.add_parser("passwd", help="read a password from stdin, print a users-file line")
    p.add_argument("user")
    args = parser.parse_args(argv)

    if args.command == "sign":
        if args.secret_file:
            with open(args.secret_file, encoding="utf-8") as f:
                secret = f.read().strip()
        else:
            secret = args.secret
        if len(secret) < MIN_SECRET_LENGTH:
            parser.error(f"the secret must have at least {MIN_SECRET_LENGTH} characters")
        expires = args.expires if args.expires is not None else int(now()) + args.ttl
        try:
            out.write(sign_url(secret, args.app, args.name, expires, args.ip, action=args.action) + "\n")
        except ValueError as e:
            parser.error(str(e))
        return 0

    if not _USER.fullmatch(args.user):
        parser.error("user names are 1-64 letters, digits or ._@-")
    password = stdin.readline().rstrip("\r\n")
    if not password:
        parser.error("no password on stdin")
    out.write(f"{args.user}:{hash_password(password)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
