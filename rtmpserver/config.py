"""The INI configuration file, turned into frozen dataclasses.

Format, keys and defaults are documented in docs/configuration.md. Every
mistake stops startup with one ``ConfigError`` whose message starts with the file name and names
the section and key, e.g. ``etc/server.ini: [limits] idle_timeout: expected a number of seconds
> 0, got 'abc'``: an operator should never have to guess which line to fix, and a server must never
start with a silently ignored setting (a typo in a limit would otherwise leave the default on).

TLS listeners are checked here, not when the port opens: a missing or mismatched key/cert is a
configuration mistake and has to be reported before twistd daemonizes, in the same one-line form.

This module never imports the reactor (only service.py and tap.py do, inside functions).
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rtmpserver import settings as _settings
from rtmpserver.errors import ConfigError
from rtmpserver.settings import Invalid, boolean, choice, integer, number, seconds, size

__all__ = [
    "AppConfig",
    "HTTPConfig",
    "ConfigError",
    "Limits",
    "ServerConfig",
    "default_app",
    "default_limits",
    "load",
    "parse",
]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one peer may make us hold or wait for."""

    handshake_timeout: float
    idle_timeout: float
    ping_interval: float
    max_message_size: int
    max_partial_bytes: int
    max_partial_csids: int
    max_amf_depth: int
    max_streams_per_connection: int
    max_stream_name_length: int
    max_connections: int
    max_connections_per_ip: int
    send_timeout: float = 15.0


@dataclass(frozen=True)
class AppConfig:
    """One ``[app:NAME]`` section: the application a client names in its connect URL."""

    name: str
    handlers: tuple[str, ...]
    gop_cache: bool
    gop_cache_max_frames: int
    gop_cache_max_bytes: int
    publisher_clash: str
    publisher_stale_timeout: float
    player_backlog_bytes: int
    player_backlog_time: float
    write_merge_ms: float
    handler_timeout: float = 10.0
    # "NAME.key = value" entries of the section, grouped by handler NAME (prefix removed). Each
    # handler factory validates its own (rtmpserver.apps); a NAME not in ``handlers`` is an error.
    handler_settings: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}), hash=False)


@dataclass(frozen=True)
class HTTPConfig:
    """One ``[http:NAME]`` section: HTTP listeners served from the same reactor as RTMP.

    Monitoring and control (stat, api, metrics, control) answer only on loopback listeners unless
    a ``token`` is set; with a token every such request must carry it.
    """

    name: str
    listen: tuple[str, ...]
    hls: bool
    flv: bool
    stat: bool
    api: bool
    metrics: bool
    control: bool
    token: str
    cors: str
    max_flv_clients: int
    hls_viewer_timeout: float = 30.0
    max_hls_viewers: int = 10000
    max_connections: int = 1000
    max_connections_per_ip: int = 32
    header_timeout: float = 10.0
    max_flv_clients_per_ip: int = 8


@dataclass(frozen=True)
class ServerConfig:
    """The whole file. ``listen`` holds endpoint strings ready for ``serverFromString``:
    relative TLS file paths have been made absolute against the config file's directory."""

    path: str
    listen: tuple[str, ...]
    name: str
    out_chunk_size: int
    window_ack_size: int
    peer_bandwidth: int
    access_log: bool
    limits: Limits
    # A mappingproxy cannot be hashed; leaving it out of the hash keeps the config usable as a key.
    apps: Mapping[str, AppConfig] = field(hash=False)
    http: Mapping[str, HTTPConfig] = field(default_factory=lambda: MappingProxyType({}), hash=False)


# --- value converters ------------------------------------------------------------------------
# The shared ones live in rtmpserver.settings (handlers use the same); the caller turns Invalid
# into "<file>: [<section>] <key>: expected <expectation>, got '<text>'".

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", re.ASCII)
_HANDLER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*", re.ASCII)

# Largest RTMP message length: the message header's length field is 24 bits (RTMP 1.0 5.3.1.2).
_MAX_MESSAGE = 0xFFFFFF
# Window/bandwidth values are 32-bit unsigned on the wire (RTMP 1.0 5.4.4, 5.4.5); keep them
# signed-positive because some clients read them as signed ints.
_MAX_U31 = 0x7FFFFFFF


_server_name = _settings.printable(256)


def _handlers(text: str) -> tuple[str, ...]:
    # Order matters: it is the chain order (docs/plugins.md), so keep it as written.
    names = [n for n in re.split(r"[,\s]+", text) if n]
    if not names:
        raise Invalid("a comma-separated list of handler names")
    for name in names:
        if not _HANDLER.fullmatch(name):
            raise Invalid(f"a comma-separated list of handler names ({name!r} is not a name)")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise Invalid(f"each handler once ({name!r} is listed twice)")
        seen.add(name)
    return tuple(names)


# --- schema: key -> (converter, default text) -------------------------------------------------
# Defaults are kept as the text a user would write so that one converter checks both; the
# example etc/server.ini carries the same text (tests/test_config.py compares them).

_SERVER_KEYS: dict[str, tuple[Callable[[str], Any], str]] = {
    "name": (_server_name, "rtmpserver"),
    "out_chunk_size": (size(1, _MAX_MESSAGE), "4096"),
    "window_ack_size": (size(1, _MAX_U31), "2500000"),
    "peer_bandwidth": (size(1, _MAX_U31), "2500000"),
    "access_log": (boolean, "yes"),
}

_LIMIT_KEYS: dict[str, tuple[Callable[[str], Any], str]] = {
    "handshake_timeout": (seconds(), "10"),
    "idle_timeout": (seconds(), "60"),
    "ping_interval": (seconds(allow_zero=True), "30"),
    "max_message_size": (size(1, _MAX_MESSAGE), "16777215"),
    "max_partial_bytes": (size(1, 2**40), "33554432"),
    # csids 2..65599 exist (RTMP 1.0 5.3.1.1), so at most 65598 can be mid-message at once.
    "max_partial_csids": (integer(1, 65598), "64"),
    # A recursive AMF decoder must stay well below Python's default recursion limit of 1000.
    "max_amf_depth": (integer(1, 256), "32"),
    "max_streams_per_connection": (integer(1, 65535), "8"),
    # An AMF0 string is at most 65535 bytes; a longer name could only come as a long string.
    "max_stream_name_length": (size(1, 65535), "256"),
    "max_connections": (integer(1, 10_000_000), "10000"),
    "max_connections_per_ip": (integer(1, 10_000_000), "64"),
    # A connection whose transport stays full (the peer reads nothing) this long is closed.
    "send_timeout": (seconds(), "15"),
}

_APP_KEYS: dict[str, tuple[Callable[[str], Any], str]] = {
    "handlers": (_handlers, "live"),
    "gop_cache": (boolean, "yes"),
    "gop_cache_max_frames": (integer(1, 10_000_000), "600"),
    "gop_cache_max_bytes": (size(1, 2**40), "16777216"),
    "publisher_clash": (choice("reject", "takeover", "auto"), "auto"),
    "publisher_stale_timeout": (seconds(), "5"),
    "player_backlog_bytes": (size(1, 2**40), "4194304"),
    "player_backlog_time": (seconds(), "3"),
    # More than a second of merging is no longer "a few milliseconds of latency".
    "write_merge_ms": (number("a number of milliseconds from 0 to 1000", 0.0, 1000.0), "0"),
    # A handler hook that neither proceeds nor rejects in this time fails closed (docs/plugins.md).
    "handler_timeout": (seconds(), "10"),
}

def _token(text: str) -> str:
    if text and (len(text) < 16 or not text.isprintable() or " " in text):
        raise Invalid("a secret of at least 16 printable characters without spaces (or nothing)")
    return text


_HTTP_KEYS: dict[str, tuple[Callable[[str], Any], str]] = {
    "hls": (boolean, "yes"),
    "flv": (boolean, "yes"),
    "stat": (boolean, "yes"),
    "api": (boolean, "yes"),
    "metrics": (boolean, "yes"),
    "control": (boolean, "no"),
    "token": (_token, ""),
    "cors": (_server_name, "*"),
    "max_flv_clients": (integer(0, 10_000_000), "1000"),
    "hls_viewer_timeout": (seconds(), "30"),
    "max_hls_viewers": (integer(0, 10_000_000), "10000"),
    "max_connections": (integer(1, 10_000_000), "1000"),
    "max_connections_per_ip": (integer(1, 10_000_000), "32"),
    "header_timeout": (seconds(), "10"),
    "max_flv_clients_per_ip": (integer(0, 10_000_000), "8"),
}

_SECTIONS_HINT = "expected [server], [limits], [app:NAME] or [http:NAME]"


def default_limits() -> Limits:
    """The documented defaults, for tests and tools that need a config without a file."""
    return Limits(**{key: convert(text) for key, (convert, text) in _LIMIT_KEYS.items()})


def default_app(name: str) -> AppConfig:
    """An ``[app:NAME]`` section with every key at its documented default."""
    return AppConfig(name=name, **{key: convert(text) for key, (convert, text) in _APP_KEYS.items()})


# --- reading ----------------------------------------------------------------------------------

# A config file is a few kilobytes; a bound keeps a wrong path (/dev/zero) from eating memory.
_MAX_FILE_BYTES = _settings.DEFAULT_FILE_LIMIT


def load(path: str) -> ServerConfig:
    """Read and check the file at ``path``; relative TLS paths are resolved against its directory."""
    try:
        data = _settings.read_bounded(path, _MAX_FILE_BYTES)
    except _settings.FileTooLarge:
        raise ConfigError(f"{path}: config file is larger than {_MAX_FILE_BYTES} bytes") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: config file is not UTF-8 text (bad byte at offset {e.start})") from None
    return parse(text, path)


def parse(text: str, path: str = "<string>") -> ServerConfig:
    """Check ``text`` as if it were the file ``path`` (used in messages and to resolve relative
    TLS paths; ``<string>`` resolves them against the current directory)."""
    parser = _read_ini(text, path)
    base_dir = os.getcwd() if path == "<string>" else os.path.dirname(os.path.abspath(path))

    # A missing [server] or [limits] section means "all defaults" (listen is still required).
    server_values = _convert_section(path, "server", {}, _SERVER_KEYS)
    limit_values = _convert_section(path, "limits", {}, _LIMIT_KEYS)
    apps: dict[str, AppConfig] = {}
    http: dict[str, HTTPConfig] = {}
    listen: tuple[str, ...] = ()

    for section in parser.sections():
        items = parser[section]
        if section == "server":
            raw_listen = items.get("listen")
            others = {k: v for k, v in items.items() if k != "listen"}
            server_values = _convert_section(path, section, others, _SERVER_KEYS, extra=("listen",))
            if raw_listen is not None:
                listen = _listeners(path, raw_listen, base_dir)
        elif section == "limits":
            limit_values = _convert_section(path, section, dict(items), _LIMIT_KEYS)
        elif section.startswith("app:"):
            name = section[len("app:"):]
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{path}: [{section}]: the application name after 'app:' must be letters, "
                    f"digits, '_', '-' or '.', got {_show(name)}"
                )
            plain = {k: v for k, v in items.items() if "." not in k}
            values = _convert_section(path, section, plain, _APP_KEYS)
            settings: dict[str, dict[str, str]] = {}
            for k, v in items.items():
                if "." not in k:
                    continue
                handler, _, sub = k.partition(".")
                if handler not in values["handlers"]:
                    raise ConfigError(
                        f"{path}: [{section}] {k}: setting for handler {handler!r}, which is not in "
                        f"this app's handlers ({', '.join(values['handlers'])})"
                    )
                if not sub:
                    raise ConfigError(f"{path}: [{section}] {k}: expected NAME.key")
                settings.setdefault(handler, {})[sub] = v.strip()
            values["handler_settings"] = MappingProxyType({h: MappingProxyType(d) for h, d in settings.items()})
            apps[name] = AppConfig(name=name, **values)
        elif section.startswith("http:"):
            name = section[len("http:"):]
            if not _NAME.fullmatch(name):
                raise ConfigError(f"{path}: [{section}]: the name after 'http:' must be letters, digits, '_', '-' or '.'")
            raw = items.get("listen")
            if raw is None or not raw.strip():
                raise ConfigError(f"{path}: [{section}] listen: at least one listener is required")
            hlisten = _listeners(path, raw, base_dir, f"[{section}] listen")
            values = _convert_section(path, section, {k: v for k, v in items.items() if k != "listen"}, _HTTP_KEYS, extra=("listen",))
            if values["control"] and not values["token"]:
                raise ConfigError(
                    f"{path}: [{section}] token: control = yes needs a token (control can drop and "
                    f"redirect anyone, so it always takes one, even on a loopback listener)"
                )
            wants_admin = values["stat"] or values["api"] or values["metrics"] or values["control"]
            exposed = [e for e in hlisten if not _loopback_only(e)]
            if wants_admin and exposed and not values["token"]:
                raise ConfigError(
                    f"{path}: [{section}] token: stat/api/metrics/control on a listener that is not "
                    f"loopback-only ({exposed[0]}) need a token (or turn them off, or add interface=127.0.0.1)"
                )
            http[name] = HTTPConfig(name=name, listen=hlisten, **values)
        else:
            raise ConfigError(f"{path}: [{section}]: unknown section ({_SECTIONS_HINT})")

    if not listen:
        raise ConfigError(f"{path}: [server] listen: at least one listener is required")
    if not apps:
        raise ConfigError(f"{path}: no [app:NAME] section: at least one application is required")

    limits = Limits(**limit_values)
    written = set(parser["limits"]) if parser.has_section("limits") else set()

    def default_note(key: str) -> str:
        return "" if key in written else " (the default)"

    if limits.ping_interval and limits.ping_interval >= limits.idle_timeout:
        # Pings exist to keep receive-only peers from hitting the idle timeout; a ping that comes
        # after the timeout never helps.
        raise ConfigError(
            f"{path}: [limits] ping_interval: expected 0 or less than idle_timeout "
            f"({limits.idle_timeout:g}), got {limits.ping_interval:g}{default_note('ping_interval')}"
        )
    if limits.max_partial_bytes < limits.max_message_size:
        raise ConfigError(
            f"{path}: [limits] max_partial_bytes: expected at least max_message_size "
            f"({limits.max_message_size}), got {limits.max_partial_bytes}"
            f"{default_note('max_partial_bytes')}"
        )

    return ServerConfig(
        path=path,
        listen=listen,
        limits=limits,
        apps=MappingProxyType(apps),
        http=MappingProxyType(http),
        **server_values,
    )


class _Parser(configparser.RawConfigParser):
    # Keys are matched exactly: 'Idle_Timeout' is reported as unknown rather than silently
    # accepted, so that the file reads the same to a person and to the server.
    def optionxform(self, optionstr: str) -> str:
        return optionstr


def _read_ini(text: str, path: str) -> configparser.RawConfigParser:
    parser = _Parser(
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";", "#"),
        strict=True,
        # Keep the default empty_lines_in_values=True: with it a full-line comment inside a
        # multi-line value (a commented-out listener) does not end the value.
        # configparser's DEFAULT section silently copies keys into every section; an impossible
        # name turns a [DEFAULT] in the file into an ordinary unknown section.
        default_section="\x00",
        interpolation=None,
    )
    try:
        parser.read_string(text, source=path)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"{path}: [{e.section}]: section appears twice (line {e.lineno})") from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"{path}: [{e.section}] {e.option}: key appears twice (line {e.lineno})") from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            f"{path}: line {e.lineno}: {_show(e.line.strip())} comes before any [section] header"
        ) from None
    except configparser.ParsingError as e:
        lineno = e.errors[0][0]  # the error holds repr(line); show the line as written
        lines = text.splitlines()
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        section = _section_at(text, lineno)
        where = f"[{section}] line {lineno}" if section else f"line {lineno}"
        raise ConfigError(f"{path}: {where}: expected 'key = value', got {_show(line)}") from None
    except configparser.Error as e:  # anything else configparser may grow
        raise ConfigError(f"{path}: {e.message}") from None
    return parser


def _section_at(text: str, lineno: int) -> str | None:
    """Name of the section that line ``lineno`` (1-based) belongs to, for parse-error messages."""
    section = None
    for line in text.splitlines()[: lineno - 1]:
        match = re.match(r"\s*\[([^\]]+)\]", line)
        if match:
            section = match.group(1)
    return section


def _convert_section(
    path: str,
    section: str,
    items: Mapping[str, str],
    keys: Mapping[str, tuple[Callable[[str], Any], str]],
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    return _settings.Section(f"{path}: [{section}]", items).convert(keys, extra)


_show = _settings.show


# --- listeners --------------------------------------------------------------------------------

# Parameter names of Twisted's server endpoint parsers, in their positional order
# (twisted.internet.endpoints._parseTCP, _TCP6ServerParser._parseServer, _parseSSL).
_ENDPOINT_PARAMS: dict[str, tuple[str, ...]] = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "backlog", "interface"),
    "ssl": ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog",
            "extraCertChain", "dhParameters"),
}
_TLS_FILE_PARAMS = ("privateKey", "certKey", "extraCertChain", "dhParameters")
_LISTEN = "[server] listen"


def _listeners(path: str, raw: str, base_dir: str, label: str = _LISTEN) -> tuple[str, ...]:
    result: list[str] = []
    for line in raw.splitlines():
        description = line.strip()
        if not description:
            continue
        where = f"{path}: {label}: {_show(description, 120)}"
        endpoint = _check_endpoint(where, description, base_dir)
        if endpoint in result:
            raise ConfigError(f"{where}: listed twice")
        result.append(endpoint)
    return tuple(result)


def _endpoint_interface(endpoint: str) -> str:
    """The ``interface`` an endpoint string listens on ("" for all addresses), read with
    Twisted's own endpoint-description tokenizer, so escaping is understood exactly as
    ``serverFromString`` will: ``ssl:443:privateKey=k\\:interface=127.0.0.1`` has none."""
    from twisted.internet.endpoints import _parse

    args, kwargs = _parse(endpoint)
    params = _ENDPOINT_PARAMS.get(str(args[0]).lower(), ()) if args else ()
    positional = dict(zip(params, args[1:], strict=False))
    return str(kwargs.get("interface", positional.get("interface", "")))


def _loopback_only(endpoint: str) -> bool:
    """True when a checked endpoint string listens on a loopback address only."""
    interface = _endpoint_interface(endpoint)
    if not interface:
        return False  # no interface: all addresses
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def _split_endpoint(where: str, description: str) -> list[tuple[str, ...]]:
    """Split like Twisted's endpoint parser: ':' separates arguments, the first '=' in an
    argument makes it key=value, a backslash makes the next character literal."""
    segments: list[tuple[str, ...]] = []
    current: list[str] = []
    parts: list[str] = []
    chars = iter(description)
    for ch in chars:
        if ch == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ConfigError(f"{where}: ends with a lone backslash")
            current.append(escaped)
        elif ch == ":":
            parts.append("".join(current))
            segments.append(tuple(parts))
            parts, current = [], []
        elif ch == "=" and not parts:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    segments.append(tuple(parts))
    return segments


def _quote(value: str) -> str:
    # Same escaping as twisted.internet.endpoints.quoteStringArgument.
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _check_endpoint(where: str, description: str, base_dir: str) -> str:
    segments = _split_endpoint(where, description)
    kind = segments[0][0].lower() if len(segments[0]) == 1 else ""
    params = _ENDPOINT_PARAMS.get(kind)
    if params is None:
        raise ConfigError(f"{where}: expected an endpoint starting with tcp:, tcp6: or ssl:")

    args: dict[str, str] = {}
    positional = [s[0] for s in segments[1:] if len(s) == 1]
    # An unescaped IPv6 address is the usual way to get too many or repeated arguments.
    hint = " (write IPv6 addresses with escaped colons: interface=\\:\\:1)" if "interface=" in description else ""
    if len(positional) > len(params):
        raise ConfigError(f"{where}: too many ':'-separated arguments{hint}")
    for name, value in zip(params, positional, strict=False):
        args[name] = value
    for segment in segments[1:]:
        if len(segment) == 2:
            key, value = segment
            if key not in params:
                raise ConfigError(f"{where}: unknown parameter {key!r} (known: {', '.join(params)})")
            if key in args:
                raise ConfigError(f"{where}: parameter {key!r} given twice{hint}")
            args[key] = value

    if "port" not in args:
        raise ConfigError(f"{where}: a port number is required")
    if not _DIGITS.fullmatch(args["port"]) or int(args["port"]) > 65535:
        raise ConfigError(f"{where}: port: expected a number from 0 to 65535, got {args['port']!r}")
    if "backlog" in args and (not _DIGITS.fullmatch(args["backlog"]) or not 1 <= int(args["backlog"]) <= 65535):
        raise ConfigError(f"{where}: backlog: expected a number from 1 to 65535, got {args['backlog']!r}")
    interface = args.get("interface", "")
    if interface:
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise ConfigError(
                f"{where}: interface: expected an IPv4 or IPv6 address (colons escaped as '\\:'), "
                f"got {interface!r}"
            ) from None

    if kind == "ssl":
        if "privateKey" not in args:
            raise ConfigError(f"{where}: an ssl listener needs privateKey=<file> (and certKey=<file>)")
        for name in _TLS_FILE_PARAMS:
            if name in args:
                if not args[name]:
                    raise ConfigError(f"{where}: {name}: expected a file name, got ''")
                args[name] = os.path.normpath(os.path.join(base_dir, args[name]))
        _check_tls_files(where, args)

    port = args.pop("port")
    endpoint = ":".join([kind, port, *(f"{k}={_quote(v)}" for k, v in args.items())])
    _check_with_twisted(where, endpoint)
    return endpoint


def _read_small(where: str, name: str, filename: str) -> bytes:
    try:
        return _settings.read_bounded(filename, _MAX_FILE_BYTES)
    except _settings.FileTooLarge:
        raise ConfigError(f"{where}: {name}: {filename} is larger than {_MAX_FILE_BYTES} bytes") from None
    except OSError as e:
        raise ConfigError(f"{where}: {name}: cannot read {filename}: {e.strerror or e}") from None


def _openssl_reason(error: Exception) -> str:
    # OpenSSL.crypto.Error/SSL.Error carry a list of (library, function, reason) tuples.
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details and all(isinstance(d, tuple) for d in details):
        return "; ".join(str(d[-1]) for d in details if d and d[-1]) or type(error).__name__
    return str(error) or type(error).__name__


def _check_tls_files(where: str, args: dict[str, str]) -> None:
    """Load key and certificate the way the ssl: endpoint will, and check they belong together,
    so that a bad file is a one-line ConfigError instead of a traceback from the reactor."""
    from OpenSSL import SSL, crypto

    key_file = args["privateKey"]
    cert_file = args.get("certKey", key_file)  # Twisted: certKey defaults to privateKey (one PEM)
    key_data = _read_small(where, "privateKey", key_file)
    cert_data = key_data if cert_file == key_file else _read_small(where, "certKey", cert_file)

    if b"ENCRYPTED" in key_data:
        # OpenSSL would prompt on the terminal for a passphrase, which a daemon cannot answer.
        raise ConfigError(f"{where}: privateKey: {key_file} is encrypted; use an unencrypted key")
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_data, passphrase=b"")
    except (crypto.Error, ValueError, TypeError) as e:
        raise ConfigError(
            f"{where}: privateKey: {key_file} is not a PEM private key ({_openssl_reason(e)})"
        ) from None
    try:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, cert_data)
    except (crypto.Error, ValueError, TypeError) as e:
        raise ConfigError(
            f"{where}: certKey: {cert_file} is not a PEM certificate ({_openssl_reason(e)})"
        ) from None
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    try:
        context.use_certificate(cert.to_cryptography())
        context.use_privatekey(key.to_cryptography_key())
        context.check_privatekey()
    except SSL.Error as e:
        raise ConfigError(
            f"{where}: privateKey: {key_file} does not match the certificate in {cert_file} "
            f"({_openssl_reason(e)})"
        ) from None

    if "extraCertChain" in args:
        chain = _read_small(where, "extraCertChain", args["extraCertChain"])
        if b"-----BEGIN CERTIFICATE-----" not in chain:
            raise ConfigError(
                f"{where}: extraCertChain: {args['extraCertChain']} holds no PEM certificate"
            )
    if "dhParameters" in args:
        _read_small(where, "dhParameters", args["dhParameters"])


def _check_with_twisted(where: str, endpoint: str) -> None:
    """Let Twisted build the endpoint (it opens nothing) to catch whatever our checks missed,
    e.g. an unknown sslmethod or a chain file Twisted cannot read."""
    from rtmpserver.tls import (
        server_endpoint,  # ssl: lines: the parser and context we listen with
    )

    try:
        server_endpoint(_NoReactor(), endpoint)
    except Exception as e:  # any failure here means the listener cannot start
        raise ConfigError(f"{where}: {type(e).__name__}: {_openssl_reason(e)}") from None


class _NoReactor:
    """Stands in for the reactor: building an endpoint only stores it, and config.py must not
    import (and so install) the global reactor."""

