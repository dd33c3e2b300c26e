"""The auth handler: which proof each action needs, and checking it."""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from rtmpserver.errors import Rejected
from rtmpserver.handlers.access import client_address
from rtmpserver.handlers.auth._common import (
    _CODES,
    _EXPIRES,
)
from rtmpserver.handlers.auth.keys import (
    KeyStore,
    parse_keys_file,
)
from rtmpserver.handlers.auth.passwords import (
    ScryptUsersChecker,
)
from rtmpserver.handlers.auth.signing import (
    _decode_signature,
    _signature,
    signed_string,
)
from rtmpserver.interfaces import IAppHandler


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
