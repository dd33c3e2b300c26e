"""Interfaces between the layers (see ARCHITECTURE.md, "Plugins")."""

from zope.interface import Attribute, Interface


class IMediaSink(Interface):
    """Something a live stream fans out to: a player, a recorder, an HLS segmenter, an HTTP-FLV client.

    Sinks are called synchronously from the publisher's data path, so they must be quick and must
    never block: buffering and dropping are the sink's own business (bounded, see ARCHITECTURE.md).
    """

    def stream_started(stream):
        """A publisher began on ``stream`` (an ``rtmpserver.hub.LiveStream``)."""

    def frame(frame):
        """One media/data message (an ``rtmpserver.hub.Frame``) from the publisher."""

    def stream_stopped(stream):
        """The publisher left ``stream``; the sink stays attached and may see another start."""


class IPublisher(Interface):
    """What the hub needs from whoever feeds a stream (an RTMP session today, a relay later)."""

    last_media_time = Attribute("clock seconds when the publisher last sent anything")
    closing = Attribute("True once the publisher's connection is going away")

    def evict(reason):
        """Another publisher takes the stream over: stop publishing and close."""
