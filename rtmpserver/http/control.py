"""Control, compatible with nginx-rtmp's control module.

``/control/drop/publisher|subscriber|client``, ``/control/record/start|stop`` and
``/control/redirect/publisher|subscriber|client`` with the same query parameters: ``app``,
``name``, ``addr``, ``clientid``, ``rec``, ``newname``.  Like nginx-rtmp, drop and redirect
answer with the number of sessions affected, record with the file path.  Unlike nginx-rtmp,
drop and redirect need at least one of ``app``, ``name``, ``addr``, ``clientid`` (400 otherwise):
an empty selection is not "everyone".  GET and POST are both accepted.
"""

from __future__ import annotations

from twisted.logger import Logger

from rtmpserver.interfaces import (
    IPlayerStream,
    IPublisher,
    IRecording,
    IRecordingController,
)

__all__ = ["control"]

_log = Logger()


def _arg(request, name: str) -> str:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else ""


def _matching(factory, method: str, app: str, name: str, addr: str, clientid: str):
    """(session, stream id, stream) triples the request selects."""
    for p in list(factory.connections):
        s = p.session
        if s is None or s.closed or (app and s.app != app):
            continue
        if addr and p.host != addr:
            continue
        if clientid and str(s.id) != clientid:
            continue
        for sid, st in list(s.streams.items()):
            publishing, playing = IPublisher.providedBy(st), IPlayerStream.providedBy(st)
            if method == "publisher" and not publishing:
                continue
            if method == "subscriber" and not playing:
                continue
            if method == "client" and not (publishing or playing):
                continue
            if name and st.name != name:
                continue
            yield s, sid, st


def control(request, factory) -> tuple[int, bytes]:
    """(HTTP status, body) for a /control/... request; ``request.postpath`` is what follows /control."""
    parts = [p.decode("utf-8", "replace") for p in request.postpath if p]
    if len(parts) != 2:
        return 404, b"expected /control/drop|record|redirect/<method>\n"
    action, method = parts
    app, name = _arg(request, "app"), _arg(request, "name")
    addr, clientid = _arg(request, "addr"), _arg(request, "clientid")
    if action in ("drop", "redirect") and method not in ("publisher", "subscriber", "client"):
        return 404, f"{action}: method must be publisher, subscriber or client\n".encode()
    if action in ("drop", "redirect") and not (app or name or addr or clientid):
        # nginx-rtmp would act on every session; one mistyped URL should not drop everyone.
        return 400, f"{action}: give at least one of app, name, addr, clientid\n".encode()
    if action == "drop":
        sessions = {s for s, _, _ in _matching(factory, method, app, name, addr, clientid)}
        for s in sessions:
            _log.info("control: dropping {peer} ({method} {app}/{name})", peer=s.peer, method=method, app=app, name=name)
            s.close(f"dropped by control ({method})")
        return 200, f"{len(sessions)}".encode()
    if action == "redirect":
        newname = _arg(request, "newname")
        if not newname:
            return 400, b"newname not specified\n"
        n = 0
        for s, sid, _ in list(_matching(factory, method, app, name, addr, clientid)):
            s.redirect(sid, newname)
            n += 1
        return 200, f"{n}".encode()
    if action == "record":
        if method not in ("start", "stop"):
            return 404, b"record: method must be start or stop\n"
        if not app or not name:
            return 400, b"record needs app and name\n"
        chain = factory.chains.get(app)
        live = factory.hub.get(app, name)
        if chain is None or live is None or not live.active:
            return 404, b"no such live stream\n"
        recorders = [h for _, h in chain.handlers if IRecordingController.providedBy(h)]
        if not recorders:
            return 404, b"the app has no record handler\n"
        paths = []
        for h in recorders:
            try:
                if method == "start":
                    # Report the file the recorder writes now, like nginx-rtmp.
                    files = IRecording(h.start(live)).paths
                    result = files[-1] if files else None
                else:
                    result = h.stop(live)
            except (LookupError, ValueError) as e:
                return 409, f"{e}\n".encode()
            if result:
                paths.append(str(result))
        return 200, "\n".join(paths).encode()
    return 404, b"unknown control action\n"
