"""The dashboard: ``GET /`` serves one static page, ``/static/<file>`` its script, style and players.

The page (``rtmpserver/http/static/``, no build step) reads ``/api/v1/streams`` and
``/api/v1/clients`` every two seconds and shows streams (codecs, size, frame rate, a bitrate graph
over the last five minutes), their clients, recordings and relays, drops and resyncs; each stream
has a player (mpegts.js for HTTP-FLV / WebSocket-FLV, hls.js for HLS, both vendored under
``static/vendor`` with their Apache-2.0 licences), and drop/record buttons that call ``/control``.

The files hold no data and no secret, so they are served without the section's token; what the
page shows comes from the API, which asks for the token as before.  The token is typed into the
page by the operator and kept in the page's memory only: the server never writes it into the page.
The files are read once and answered from memory, with a Content-Security-Policy that allows only
this origin's scripts (the page has no inline script) and forbids framing (the control buttons
must not be clickjacked).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["StaticFiles", "STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".txt": b"text/plain; charset=utf-8",
    ".LICENSE": b"text/plain; charset=utf-8",
}

# Scripts and styles from this origin only; media from blob: (MSE) and this origin; API,
# HTTP-FLV, WebSocket-FLV and HLS requests to this origin (CSP 3: 'self' covers ws:/wss: to the
# same host).  No frames, no plugins, no forms to elsewhere.
_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class StaticFiles:
    """The dashboard's files, read once: name (relative to static/) -> (content type, bytes)."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.files: dict[str, tuple[bytes, bytes]] = {}
        for path in sorted(directory.rglob("*")):
            ctype = _TYPES.get(path.suffix)
            if path.is_file() and ctype is not None:
                self.files[path.relative_to(directory).as_posix()] = (ctype, path.read_bytes())

    def render(self, request, name: str) -> bytes:
        found = self.files.get(name)
        request.setHeader(b"x-content-type-options", b"nosniff")
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        ctype, body = found
        request.setHeader(b"content-type", ctype)
        request.setHeader(b"content-security-policy", _CSP)
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"cache-control", b"no-cache")
        return body
