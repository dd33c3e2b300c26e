"""``auth.*`` settings and the plugin factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer

from rtmpserver.errors import ConfigError
from rtmpserver.handlers.auth._common import (
    _LIST_SEPARATOR,
    MAX_FILE_BYTES,
    MIN_SECRET_LENGTH,
    MODES,
)
from rtmpserver.handlers.auth.files import (
    FileProblem,
    WatchedFile,
)
from rtmpserver.handlers.auth.handler import (
    AuthHandler,
    Policy,
    _play_keys_file,
)
from rtmpserver.handlers.auth.keys import (
    KeyStore,
    _parse_key_entry,
    parse_keys_file,
)
from rtmpserver.handlers.auth.passwords import (
    ScryptUsersChecker,
    parse_users_file,
)
from rtmpserver.interfaces import IAppHandlerFactory
from rtmpserver.settings import Section, boolean

_KNOWN = (
    "publish", "play", "publish_keys", "publish_keys_file", "stream_keys", "play_keys", "play_keys_file",
    "secret", "secret_file", "bind_ip", "users_file",
)


class _Settings:
    """Reads one app's ``auth.*`` keys, every problem a ConfigError naming file, app and key."""

    def __init__(self, settings: Mapping[str, str], context: Any) -> None:
        self.section = Section.for_handler("auth", settings, context)
        self.s = dict(settings)
        self.where = f"{self.section.where} auth"
        self.base = self.section.base_dir

    def error(self, key: str, expected: str, value: str | None = None, secret: bool = False) -> ConfigError:
        """``<path>: [app:<app>] auth.<key>: <expected>, got '<value>'``; a secret's value is
        never shown (the message goes to the terminal and to logs)."""
        return self.section.error(key, expected, self.s.get(key, "") if value is None else value, secret=secret)

    def unused(self, key: str, why: str) -> ConfigError:
        # Settings that nothing checks look like protection and are none: refuse to start.
        return self.section.problem(key, f"is set, but {why}; remove it or enable the check")

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
        if not self.s[key]:
            raise self.error(key, "expected a file name")
        return self.section.path(key)

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
            self.path(key)  # an empty name is "expected a file name"
            filename, data = self.section.read(key, MAX_FILE_BYTES)
            try:
                value = data.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ConfigError(f"{self.where}.{key}: {filename} is not UTF-8 text") from None
        else:
            return None
        if len(value) < MIN_SECRET_LENGTH:
            raise self.error(key, f"expected a secret of at least {MIN_SECRET_LENGTH} characters", value, secret=True)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self.section.get(key, boolean, "yes" if default else "no")


@implementer(IAppHandlerFactory, IPlugin)
class AuthFactory:
    name = "auth"
    description = "stream keys, signed expiring URLs and passwords for publish and play"

    def build(self, settings: Mapping[str, str], context: Any) -> AuthHandler:
        cfg = _Settings(settings, context)
        cfg.section.check_known(_KNOWN)
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
