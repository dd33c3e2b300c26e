"""Relay targets: parsing ``rtmp://``, ``rtmps://`` and ``rtmp+unix://`` URLs, filling templates,
and building the Twisted client endpoint for one.

URL forms (the last path segment is the stream name, everything between host and name the app,
so ``rtmp://h/app/inst/name`` has app ``app/inst``, as FFmpeg splits it)::

    rtmp://host[:port]/app[/inst]/name[?query]        TCP, port 1935 by default
    rtmps://host[:port]/app[/inst]/name[?query]       TLS, port 443 by default
    rtmp://[::1]:1935/app/name                        IPv6 literal
    rtmp+unix://%2Frun%2Frtmp%2Fw1.sock/app/name      Unix socket, its path percent-encoded in the host part

The query string travels with the stream name (``play("name?query")``), which is how RTMP servers
receive per-stream arguments such as tokens; it is therefore treated as a secret: ``public`` never
shows it, nor user:password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

__all__ = ["RelayURL", "parse_url", "fill_template", "client_endpoint", "MAX_NAME_LENGTH"]

DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
SCHEMES = ("rtmp", "rtmps", "rtmp+unix")
MAX_NAME_LENGTH = 256  # bytes of a stream name or app we put into a URL
MAX_URL_LENGTH = 2048

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIELD = re.compile(r"\{(name|app|args)\}")


@dataclass(frozen=True)
class RelayURL:
    scheme: str  # "rtmp", "rtmps" or "rtmp+unix"
    host: str  # hostname or IP literal (no brackets); the socket path for rtmp+unix
    port: int  # 0 for rtmp+unix
    app: str
    name: str
    query: str = ""  # without "?"

    @property
    def tls(self) -> bool:
        return self.scheme == "rtmps"

    @property
    def unix(self) -> bool:
        return self.scheme == "rtmp+unix"

    @property
    def _authority(self) -> str:
        if self.unix:
            return quote(self.host, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def tc_url(self) -> str:
        """The ``tcUrl`` of connect: scheme, host, port and app (no stream name, no query)."""
        if self.unix:
            return f"rtmp://localhost/{_quote_path(self.app)}"
        return f"{self.scheme}://{self._authority}/{_quote_path(self.app)}"

    @property
    def stream_name(self) -> str:
        """What play/publish is called with: the name, and the query string if there is one."""
        return f"{self.name}?{self.query}" if self.query else self.name

    @property
    def public(self) -> str:
        """The URL as stats and logs may show it: no credentials, no query string."""
        return f"{self.scheme}://{self._authority}/{_quote_path(self.app)}/{quote(self.name, safe='')}"

    def __str__(self) -> str:
        return self.public


def _quote_path(app: str) -> str:
    return "/".join(quote(p, safe="") for p in app.split("/"))


def _check_part(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"relay URL has an empty {what}")
    if len(value.encode()) > MAX_NAME_LENGTH:
        raise ValueError(f"relay URL {what} is longer than {MAX_NAME_LENGTH} bytes")
    if _CONTROL.search(value):
        raise ValueError(f"relay URL {what} contains control characters")
    return value


def parse_url(text: str) -> RelayURL:
    """Parse a relay target; raises ValueError (with a message fit for a config error) if invalid."""
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"relay URL longer than {MAX_URL_LENGTH} characters")
    if _CONTROL.search(text) or " " in text:
        raise ValueError("relay URL contains spaces or control characters")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"relay URL scheme must be one of {', '.join(SCHEMES)}, not {parts.scheme!r}")
    if parts.fragment:
        raise ValueError("relay URL must not have a #fragment")
    netloc = parts.netloc.rpartition("@")[2]  # credentials are not an RTMP thing: ignore them
    if scheme == "rtmp+unix":
        host, port = unquote(netloc), 0
        if not host.startswith("/"):
            raise ValueError("rtmp+unix URL needs an absolute socket path, percent-encoded: rtmp+unix://%2Fpath%2Fto.sock/app/name")
    else:
        try:
            host = parts.hostname or ""
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError as e:
            raise ValueError(f"relay URL has an invalid port: {e}") from None
        if not host:
            raise ValueError("relay URL has no host")
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if len(segments) < 2 or not all(segments):
        raise ValueError("relay URL path must be /app[/instance]/name with no empty segment")
    app = "/".join(_check_part(s, "app") for s in segments[:-1])
    name = _check_part(segments[-1], "stream name")
    if "/" in name:
        raise ValueError("relay URL stream name must not contain '/'")
    return RelayURL(scheme, host, port, app, name, parts.query)


def fill_template(template: str, *, name: str, app: str = "", args: str = "") -> RelayURL:
    """A relay URL from ``template`` with ``{name}``, ``{app}`` and ``{args}`` filled in.

    ``name`` and ``app`` are percent-encoded as one path segment each, so a value cannot add path
    segments, a query or a port ("a/../b" stays one name).  ``args`` (a query string, e.g. the one a
    local player sent) is re-encoded pair by pair, so it cannot end the query or add a fragment.
    Other braces are an error.  The result is parsed and checked like any configured URL.
    """
    for value, what in ((name, "stream name"), (app or "x", "app")):
        _check_part(value, what)
    values = {
        "name": quote(name, safe=""),
        "app": quote(app, safe=""),
        "args": urlencode(parse_qsl(args, keep_blank_values=True)),
    }
    filled = _FIELD.sub(lambda mo: values[mo.group(1)], template)
    if "{" in filled or "}" in filled:
        raise ValueError(f"relay URL template {template!r}: only {{name}}, {{app}} and {{args}} can be filled in")
    if filled.endswith("?"):
        filled = filled[:-1]  # "...?{args}" with no args
    return parse_url(filled)


def client_endpoint(reactor, url: RelayURL, *, verify: bool = True, ca_file: str | None = None, timeout: float = 10.0):
    """The ``IStreamClientEndpoint`` that reaches ``url``.

    rtmps verifies the server certificate against the system trust store and the URL's host name
    unless ``verify`` is False; ``ca_file`` (PEM) replaces the trust store, for self-signed origins.
    """
    from twisted.internet.endpoints import (
        HostnameEndpoint,
        UNIXClientEndpoint,
        wrapClientTLS,
    )

    if url.unix:
        return UNIXClientEndpoint(reactor, url.host, timeout=timeout)
    endpoint = HostnameEndpoint(reactor, url.host, url.port, timeout=timeout)
    if not url.tls:
        return endpoint
    return wrapClientTLS(tls_options(url.host, verify=verify, ca_file=ca_file), endpoint)


def tls_options(hostname: str, *, verify: bool = True, ca_file: str | None = None):
    """Client TLS options for an rtmps origin."""
    from twisted.internet import ssl

    if not verify:
        return ssl.CertificateOptions(verify=False)
    if ca_file:
        with open(ca_file, "rb") as f:
            trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(f.read())])
        return ssl.optionsForClientTLS(hostname, trustRoot=trust)
    return ssl.optionsForClientTLS(hostname)
