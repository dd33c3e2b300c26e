"""Admission of publish and play requests: the handler chain's decision, then the hub.

A NetStream whose request is being decided holds ``PENDING``; only the chain's decision sends a
``*.Start`` status (or the refusal).  Publishing onto a stream that already has a publisher is
settled by the app's ``publisher_clash`` policy (docs/configuration.md): reject, take over, or
take over only a stale publisher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtmpserver.codec import messages as m
from rtmpserver.errors import Rejected
from rtmpserver.hub import LiveStream
from rtmpserver.requests import PublishRequest
from rtmpserver.session.streams import PublisherStream

if TYPE_CHECKING:
    from rtmpserver.session.netconnection import Session

__all__ = ["PENDING", "decide", "go_live", "may_take_over"]

# A NetStream whose publish/play is waiting for the handler chain's decision.
PENDING = object()

_REFUSAL = {"publish": "NetStream.Publish.Denied", "play": "NetStream.Play.Failed"}
_log = Logger(namespace="rtmpserver.session.admission")


def decide(session: Session, hook: str, request, sid: int, final) -> None:
    """Run ``session``'s chain for ``hook`` with stream ``sid`` marked PENDING; ``final`` acts on a yes."""
    session.streams[sid] = PENDING

    def refused(f) -> None:
        f.trap(Rejected)
        session.stats.rejected(hook)
        if session.streams.get(sid) is PENDING:
            session.streams[sid] = None
        if not session.closed:
            session.status(sid, "error", f.value.code, f.value.description or f"{hook} refused")

    def guarded(req):
        if session.closed or session.streams.get(sid) is not PENDING:
            raise Rejected(_REFUSAL[hook], "stream closed before the decision")
        return final(req)

    if session.chain is None:
        try:
            outcome = guarded(request)
        except Rejected as e:
            refused(Failure(e))
            return
        if isinstance(outcome, defer.Deferred):
            outcome.addErrback(refused)
        return
    session.chain.run(hook, request, guarded).addErrback(refused)


def go_live(session: Session, sid: int, request: PublishRequest):
    """The chain said yes to a publish: settle a clash with the current publisher, then start.

    With ``[server] workers`` > 1 the hub has a stream directory: the name is claimed there first
    (the publisher clash policy then holds across workers) and this returns a Deferred.
    """
    directory = session.hub.directory
    if directory is None:
        return _go_live(session, sid, request)
    app, name, owner = session.app, request.name, session.hub.worker
    policy, stale = session.app_config.publisher_clash, session.app_config.publisher_stale_timeout

    def claimed(granted: bool):
        if not granted:
            _log.info("{peer}: publish {app}/{name} refused: published on another worker", peer=session.peer, app=app, name=name)
            raise Rejected("NetStream.Publish.BadName", f"{name} is already being published.")
        if session.closed or session.streams.get(sid) is not PENDING:
            live = session.hub.get(app, name)
            if live is None or live.publisher is None:
                directory.release(app, name, owner)
            raise Rejected("NetStream.Publish.BadName", "stream closed before the decision")
        return _go_live(session, sid, request)

    return directory.claim(app, name, owner, policy, stale).addCallback(claimed)


def _go_live(session: Session, sid: int, request: PublishRequest) -> LiveStream:
    name = request.name
    live = session.live(name)
    current = live.publisher
    if current is not None:
        if not may_take_over(session, current):
            _log.info(
                "{peer}: publish {app}/{name} refused: already publishing from {other}",
                peer=session.peer, app=session.app, name=name, other=_peer_of(current),
            )
            session.hub._maybe_discard(live)
            raise Rejected("NetStream.Publish.BadName", f"{name} is already being published.")
        _log.info("{peer}: publish {app}/{name} takes over from a stale publisher", peer=session.peer, app=session.app, name=name)
        live.stop()
        current.evict("taken over by a new publisher")
        live = session.live(name)
    pub = PublisherStream(session, sid, live, name, request.mode, dict(request.args))
    session.streams[sid] = pub
    session.stats.began("publisher", name)
    live.start(pub, session.clock.seconds())
    session.send_user_control(m.UserControl.stream_begin(sid))
    session.status(sid, "status", "NetStream.Publish.Start", f"{name} is now published.", details=name)
    return live


def may_take_over(session: Session, current) -> bool:
    """``publisher_clash``: may this session's publish replace ``current`` (an ``IPublisher``)?"""
    app = session.app_config
    policy = app.publisher_clash
    if policy == "takeover":
        return True
    if policy == "reject":
        return False
    idle = session.clock.seconds() - current.last_media_time
    return current.closing or idle >= app.publisher_stale_timeout


def _peer_of(publisher) -> str:
    session = publisher.session if isinstance(publisher, PublisherStream) else None
    return session.peer if session is not None else "?"
