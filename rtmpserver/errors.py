"""The two error families (docs/architecture.md, "Rules we keep", 2), plus refusals and configuration errors.

``RemoteProtocolError``: the peer sent something we cannot accept. The connection that sent it is
logged and closed; nothing else is affected.  ``LocalProtocolError``: we were asked to do something
the protocol does not allow (our bug, or an API misuse); it is allowed to surface.
``Rejected`` is neither: it is a policy decision by an application handler.
"""


class RTMPError(Exception):
    """Base of every error raised by this package."""


class RemoteProtocolError(RTMPError):
    """The peer sent malformed or out-of-bounds data. Close only that peer's connection."""


class HandshakeError(RemoteProtocolError):
    """Bad C0/C1/C2 (or S0/S1/S2 on the client side)."""


class ChunkStreamError(RemoteProtocolError):
    """Malformed chunk stream: bad header, impossible length, protocol control misuse."""


class LimitExceeded(RemoteProtocolError):
    """A configured bound was crossed (message size, partial bytes, csids in flight, ...)."""


class AMFDecodeError(RemoteProtocolError):
    """Malformed AMF0/AMF3 data: truncated value, unknown marker, bad reference, too deep."""


class MessageError(RemoteProtocolError):
    """A message whose body does not match its type (short control message, bad command)."""


class FLVError(RemoteProtocolError):
    """Malformed FLV file, tag or audio/video tag header."""


class LocalProtocolError(RTMPError):
    """We were asked to produce something the protocol does not allow."""


class AMFEncodeError(LocalProtocolError):
    """A Python value that AMF cannot represent (or that exceeds a format limit)."""


class Rejected(Exception):
    """An application handler refused a connect/publish/play.

    ``code`` is the status code sent to the client (e.g. ``NetStream.Publish.Denied``) and
    ``description`` the human-readable text that goes with it.
    """

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.description else self.code


class ConfigError(Exception):
    """The configuration file is wrong. The message names file, section and key."""
