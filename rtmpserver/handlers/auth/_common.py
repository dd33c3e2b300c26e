"""Constants and digests the auth modules share."""

from __future__ import annotations

import base64
import hashlib
import re

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
