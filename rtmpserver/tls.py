"""Server endpoints for ``[server] listen`` and ``[http:NAME] listen`` lines, with our own TLS.

``server_endpoint(reactor, description)`` turns a listener line into an
``IStreamServerEndpoint``.  ``tcp:``, ``tcp6:`` and ``unix:`` lines go to Twisted's
``serverFromString`` unchanged.  An ``ssl:`` line is parsed with Twisted's own endpoint parser (so
quoting, positional arguments and defaults are Twisted's) and then listens with a TLS context built
here instead of Twisted's default one:

* TLS 1.2 is the minimum; TLS 1.3 is on.
* TLS 1.2 cipher suites: ECDHE key exchange with AEAD ciphers only (AES-GCM, ChaCha20-Poly1305),
  for RSA and ECDSA certificates; no static-RSA key exchange, no CBC, no SHA-1 MACs.  TLS 1.3
  suites are all AEAD.
* No TLS 1.3 session tickets (librtmp 2.4 built with GnuTLS, i.e. rtmpdump and the tools linked
  to it, fails its RTMP handshake when a NewSessionTicket arrives after the TLS handshake).  TLS 1.2
  clients can resume (session tickets, or session ids from the server's cache).
* ``sslmethod`` is not accepted: the protocol versions are fixed as above.

Everything that depends on Twisted's private endpoint parser lives in ``_parse_ssl``; the tests
check it against the installed Twisted, so a change there fails loudly instead of silently.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from OpenSSL import SSL, crypto
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.internet.interfaces import IOpenSSLContextFactory, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

__all__ = [
    "TLS12_CIPHERS",
    "SESSION_ID_CONTEXT",
    "TLSConfigError",
    "parse_ssl",
    "server_context",
    "server_endpoint",
    "listener",
]

# OpenSSL cipher string for TLS 1.2: ECDHE key exchange, AEAD bulk ciphers; both certificate types.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# Ties a resumed session to this server's contexts (OpenSSL refuses resumption without one).
SESSION_ID_CONTEXT = b"rtmpserver"
SESSION_TIMEOUT = 3600  # seconds a TLS 1.2 session can be resumed
_log = Logger(namespace="rtmpserver.tls")
_SSL_OPTIONS = ("privateKey", "certKey", "sslmethod", "interface", "backlog", "extraCertChain",
                "dhParameters")


class TLSConfigError(ValueError):
    """An ``ssl:`` description we will not listen on; the message names the option."""


def parse_ssl(description: str) -> dict[str, Any]:
    """The options of an ``ssl:`` description as Twisted's parser reads them.

    Returns a dict with ``port`` (int) and whichever of privateKey, certKey, sslmethod, interface,
    backlog, extraCertChain, dhParameters were given (strings; backlog an int).
    """
    args, kwargs = _parse_ssl(description)
    if len(args) > 1 + len(_SSL_OPTIONS):
        raise TLSConfigError("too many ':'-separated arguments")
    params: dict[str, Any] = dict(zip(("port", *_SSL_OPTIONS), args, strict=False))
    for key, value in kwargs.items():
        if key != "port" and key not in _SSL_OPTIONS:
            raise TLSConfigError(f"unknown parameter {key!r} (known: port, {', '.join(_SSL_OPTIONS)})")
        if key in params:
            raise TLSConfigError(f"parameter {key!r} given twice")
        params[key] = value
    if "port" not in params:
        raise TLSConfigError("a port number is required")
    if "sslmethod" in params:
        raise TLSConfigError(
            "sslmethod: not supported; TLS 1.2 and 1.3 are always on and older versions always off"
        )
    if "privateKey" not in params:
        raise TLSConfigError("an ssl listener needs privateKey=<file> (and certKey=<file>)")
    try:
        params["port"] = int(params["port"])
        if "backlog" in params:
            params["backlog"] = int(params["backlog"])
    except ValueError as e:
        raise TLSConfigError(f"expected a number: {e}") from None
    return params


def _parse_ssl(description: str) -> tuple[list[str], dict[str, str]]:
    """Twisted's split of an endpoint description into (positional args, keyword args), minus the
    leading ``ssl``.  The one use of a Twisted internal (``endpoints._parse``); pinned by a test."""
    args, kwargs = endpoints._parse(description)
    if not args or str(args[0]).lower() != "ssl":
        raise TLSConfigError(f"not an ssl: endpoint: {description!r}")
    return [str(a) for a in args[1:]], {str(k): str(v) for k, v in kwargs.items()}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def server_context(params: dict[str, Any]) -> SSL.Context:
    """A pyOpenSSL server context for parsed ``ssl:`` options (see the module docstring).

    Raises ``OSError`` for an unreadable file, ``crypto.Error``/``SSL.Error``/``ValueError`` for
    bad PEM or a key that does not match the certificate.
    """
    key_file = params["privateKey"]
    cert_file = params.get("certKey", key_file)  # one PEM file may hold both, as in Twisted
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, _read(key_file), passphrase=b"")
    cert = crypto.load_certificate(crypto.FILETYPE_PEM, _read(cert_file))

    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(0)  # the newest this OpenSSL has (TLS 1.3)
    ctx.set_cipher_list(TLS12_CIPHERS.encode("ascii"))
    options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_SINGLE_ECDH_USE
    if hasattr(SSL, "OP_NO_RENEGOTIATION"):  # pyOpenSSL only defines it when OpenSSL has it
        options |= SSL.OP_NO_RENEGOTIATION
    ctx.set_options(options)
    ctx.use_certificate(cert.to_cryptography())
    ctx.use_privatekey(key.to_cryptography_key())
    ctx.check_privatekey()
    if params.get("extraCertChain"):
        for pem in _split_pem(_read(params["extraCertChain"])):
            ctx.add_extra_chain_cert(crypto.load_certificate(crypto.FILETYPE_PEM, pem).to_cryptography())
    if params.get("dhParameters"):
        # Accepted for compatibility with Twisted's ssl: syntax; no DHE suite is offered, so
        # these parameters are never used for key exchange.
        ctx.load_tmp_dh(params["dhParameters"].encode())
    _session_settings(ctx)
    return ctx


def _session_settings(ctx: SSL.Context) -> None:
    """TLS 1.2 resumption (session tickets, and session ids from the server cache); no TLS 1.3
    session tickets (``SSL_CTX_set_num_tickets(ctx, 0)``, see ``_num_tickets``)."""
    ctx.set_session_id(SESSION_ID_CONTEXT)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.set_timeout(SESSION_TIMEOUT)
    if not _num_tickets().set(ctx, 0):
        _log.warn(
            "cannot switch TLS 1.3 session tickets off ({reason}); rtmpdump and other librtmp/GnuTLS "
            "clients will fail over TLS 1.3", reason=_num_tickets().problem,
        )


class _NumTickets:
    """``SSL_CTX_set_num_tickets``/``SSL_CTX_get_num_tickets`` of the OpenSSL pyOpenSSL uses.

    pyOpenSSL and the cryptography bindings do not expose these two functions, and cryptography's
    wheels link OpenSSL statically without exporting them, so neither ``_lib`` nor
    ``ctypes.CDLL`` reaches them.  The wheel does keep its ELF symbol table, so we look the two
    (local) symbols up there, add the library's load address from /proc/self/maps and call them
    through ctypes.  Before trusting them we check on a scratch context that ``get`` answers
    OpenSSL's default of 2 and that ``set(0)`` then reads back 0.  When anything does not fit
    (another platform, a stripped build), ``problem`` says what and ``set`` returns False.
    """

    def __init__(self) -> None:
        self.problem = ""
        self._get: Any = None
        self._set: Any = None
        try:
            self._resolve()
        except Exception as e:  # any mismatch means "not available", never a crash later
            self.problem = f"{type(e).__name__}: {e}"
            self._get = self._set = None

    def _resolve(self) -> None:
        import ctypes

        from cryptography.hazmat.bindings import _rust

        path = os.path.realpath(_rust.__file__)
        symbols = _elf_symbols(path, {b"SSL_CTX_set_num_tickets", b"SSL_CTX_get_num_tickets"})
        base = _load_base(path)
        getter = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p)(base + symbols[b"SSL_CTX_get_num_tickets"])
        setter = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)(
            base + symbols[b"SSL_CTX_set_num_tickets"]
        )
        probe = SSL.Context(SSL.TLS_SERVER_METHOD)
        pointer = _ctx_pointer(probe)
        if getter(pointer) != 2:
            raise RuntimeError("SSL_CTX_get_num_tickets does not answer the default of 2")
        if setter(pointer, 0) != 1 or getter(pointer) != 0:
            raise RuntimeError("SSL_CTX_set_num_tickets(ctx, 0) did not take")
        self._get, self._set = getter, setter

    def set(self, ctx: SSL.Context, n: int) -> bool:
        if self._set is None:
            return False
        pointer = _ctx_pointer(ctx)
        return bool(self._set(pointer, n) == 1 and self._get(pointer) == n)

    def get(self, ctx: SSL.Context) -> int | None:
        return None if self._get is None else int(self._get(_ctx_pointer(ctx)))


_NUM_TICKETS: _NumTickets | None = None


def _num_tickets() -> _NumTickets:
    global _NUM_TICKETS
    if _NUM_TICKETS is None:
        _NUM_TICKETS = _NumTickets()
    return _NUM_TICKETS


def _ctx_pointer(ctx: SSL.Context) -> int:
    # pyOpenSSL keeps the SSL_CTX * in Context._context (a cffi pointer).
    return int(SSL._ffi.cast("uintptr_t", ctx._context))


def _elf_symbols(path: str, names: set[bytes]) -> dict[bytes, int]:
    """Values of the named function symbols in an ELF64 little-endian file's .symtab."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeError(f"{path} is not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found: dict[bytes, int] = {}
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != 2 or entsize != 24:  # SHT_SYMTAB
            continue
        str_offset = sections[link][4]
        for st_name, st_info, _other, shndx, value, _size in struct.iter_unpack("<IBBHQQ", data[offset : offset + size]):
            if st_info & 0xF != 2 or shndx == 0 or not value:  # STT_FUNC, defined here
                continue
            end = data.index(b"\0", str_offset + st_name)
            name = data[str_offset + st_name : end]
            if name in names:
                found[name] = value
    missing = names - found.keys()
    if missing:
        raise RuntimeError(f"{path} has no symbol {b', '.join(sorted(missing)).decode()}")
    return found


def _load_base(path: str) -> int:
    """Where ``path`` is mapped in this process (its first mapping, file offset 0)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == path and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    raise RuntimeError(f"{path} is not mapped in this process")


def _split_pem(data: bytes) -> list[bytes]:
    marker = b"-----BEGIN CERTIFICATE-----"
    return [marker + part for part in data.split(marker)[1:]]


@implementer(IOpenSSLContextFactory)
class _ContextFactory:
    """What Twisted's TLS code asks for: ``getContext()``, one context shared by every
    connection (so the session cache is shared too)."""

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context


def server_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """An endpoint for one listener line; ``ssl:`` ones use ``server_context``.

    Raises ``TLSConfigError`` for an ssl: option we do not accept and whatever
    ``server_context`` raises for bad key material; config.py turns both into ConfigError.
    """
    if description.split(":", 1)[0].strip().lower() != "ssl":
        return endpoints.serverFromString(reactor, description)
    params = parse_ssl(description)
    factory = _ContextFactory(server_context(params))
    return endpoints.SSL4ServerEndpoint(
        reactor,
        params["port"],
        factory,
        backlog=params.get("backlog", 50),
        interface=params.get("interface", ""),
    )


def context_factory(description: str) -> _ContextFactory:
    """The TLS context factory of an ``ssl:`` line, for a listening socket made elsewhere (a
    worker of ``[server] workers`` adopting the supervisor's)."""
    return _ContextFactory(server_context(parse_ssl(description)))


def listener(reactor: Any, description: str, factory: Any) -> StreamServerEndpointService:
    """A service listening on ``description`` with ``factory``, as ``strports.service`` made them:
    a listen failure (port in use, no permission) raises from ``startService``, so twistd stops at
    startup instead of running without that listener.  ``_raiseSynchronously`` is Twisted's own
    (private) switch for exactly that, set by ``strports.service``; a test pins it."""
    service = StreamServerEndpointService(server_endpoint(reactor, description), factory)
    service._raiseSynchronously = True
    return service
