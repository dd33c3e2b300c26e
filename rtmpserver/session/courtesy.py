"""Commands encoders and players send that need an answer but change nothing on our side.

FMLE/OBS/FFmpeg call releaseStream and FCPublish before publishing (and FCUnpublish after),
some players FCSubscribe before play; Flash asks getStreamLength and _checkbw.  The answers
are the ones those clients wait for.  Each takes the session and the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtmpserver.codec import amf0
from rtmpserver.codec import messages as m

if TYPE_CHECKING:
    from rtmpserver.session.netconnection import Session

__all__ = ["release_stream", "fc_publish", "fc_unpublish", "fc_subscribe", "checkbw"]


def _first_name(cmd: m.CommandMessage) -> str:
    return cmd.arguments[0] if cmd.arguments and isinstance(cmd.arguments[0], str) else ""


def _ack(session: Session, cmd: m.CommandMessage) -> None:
    if cmd.transaction_id:
        session.command("_result", cmd.transaction_id, None, amf0.UNDEFINED)


def release_stream(session: Session, cmd: m.CommandMessage) -> None:
    _ack(session, cmd)


def fc_publish(session: Session, cmd: m.CommandMessage) -> None:
    session.command("onFCPublish", 0, None, {"code": "NetStream.Publish.Start", "description": _first_name(cmd)})
    _ack(session, cmd)


def fc_unpublish(session: Session, cmd: m.CommandMessage) -> None:
    session.command("onFCUnpublish", 0, None, {"code": "NetStream.Unpublish.Success", "description": _first_name(cmd)})
    _ack(session, cmd)


def fc_subscribe(session: Session, cmd: m.CommandMessage) -> None:
    session.command("onFCSubscribe", 0, None, {"code": "NetStream.Play.Start", "description": _first_name(cmd)})


def checkbw(session: Session, cmd: m.CommandMessage) -> None:
    _ack(session, cmd)
