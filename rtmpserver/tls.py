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
  and 1.3 clients cannot resume sessions (see ``_session_settings``).
* ``sslmethod`` is not accepted: the protocol versions are fixed as above.

Everything that depends on Twisted's private endpoint parser lives in ``_parse_ssl``; the tests
check it against the installed Twisted, so a change there fails loudly instead of silently.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet import endpoints
from twisted.internet.interfaces import IOpenSSLContextFactory, IStreamServerEndpoint
from zope.interface import implementer

__all__ = [
    "TLS12_CIPHERS",
    "SESSION_ID_CONTEXT",
    "TLSConfigError",
    "parse_ssl",
    "server_context",
    "server_endpoint",
]

# OpenSSL cipher string for TLS 1.2: ECDHE key exchange, AEAD bulk ciphers; both certificate types.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# Ties a resumed session to this server's contexts (OpenSSL refuses resumption without one).
SESSION_ID_CONTEXT = b"rtmpserver"
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
    params = dict(zip(("port", *_SSL_OPTIONS), args))
    for key, value in kwargs.items():
        if key not in _SSL_OPTIONS:
            raise TLSConfigError(f"unknown parameter {key!r} (known: port, {', '.join(_SSL_OPTIONS)})")
        if key in params:
            raise TLSConfigError(f"parameter {key!r} given twice")
        params[key] = value
    if len(args) > 1 + len(_SSL_OPTIONS):
        raise TLSConfigError("too many ':'-separated arguments")
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
    """No TLS 1.3 session tickets.

    OpenSSL's switch for that, SSL_CTX_set_num_tickets(ctx, 0), is not bound by
    pyOpenSSL/cryptography (whose OpenSSL is linked in statically, so ctypes cannot reach it
    either).  What works instead: SSL_OP_NO_TICKET with the server session cache off; OpenSSL then
    decides while reading the ClientHello that no ticket is due.  The cost: TLS 1.2 connections
    cannot resume either (no tickets, no cached session ids), so every connection is a full
    handshake.  Setting the option later, once TLS 1.3 is negotiated, is too late (tested:
    OpenSSL still sends two tickets).
    """
    ctx.set_session_id(SESSION_ID_CONTEXT)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_options(SSL.OP_NO_TICKET)


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

