"""Signed URLs: HMAC-SHA256 over action, app, name, expiry (and optionally the client address)."""

from __future__ import annotations

import binascii
import hashlib
import hmac

from rtmpserver.handlers.access import client_address
from rtmpserver.handlers.auth._common import (
    _B64_SIGNATURE,
    _CODES,
    _HEX_SIGNATURE,
    _unb64,
)


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
