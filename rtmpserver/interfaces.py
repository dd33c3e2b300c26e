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


class IAppHandler(Interface):
    """One link of an application's handler chain (``[app:NAME] handlers = access, auth, record``).

    ``connect``, ``publish`` and ``play`` each receive a request (``rtmpserver.requests``) and a
    ``proceed`` callable.  A hook either calls ``proceed(request)`` exactly once (with the same
    request or a changed copy, e.g. ``dataclasses.replace(request, name="alice")``) or raises
    ``rtmpserver.errors.Rejected(code, description)``.  Hooks may be plain functions, return a
    Deferred, or be ``async def``; a Deferred/coroutine that fails with Rejected rejects.
    ``proceed`` returns a Deferred that fires with the outcome once the rest of the chain has
    decided and the server acted (publish: the ``LiveStream``; connect/play: None), or fails
    with Rejected if a later handler refused.  A hook that neither proceeds nor rejects within
    the app's ``handler_timeout`` fails closed.  No ``*.Start`` status goes to the client before
    the whole chain has proceeded.
    """

    def connect(request, proceed):
        """A client connects to the application (``ConnectRequest``)."""

    def publish(request, proceed):
        """A client asks to publish (``PublishRequest``)."""

    def play(request, proceed):
        """A client asks to play (``PlayRequest``)."""

    def close_stream(event):
        """Observation only: a publish or play ended (``StreamClosed``). Errors are logged."""


class IAppHandlerFactory(Interface):
    """A handler kind, found with ``twisted.plugin.getPlugins(IAppHandlerFactory, rtmpserver.plugins)``."""

    name = Attribute("the name used in config: ``handlers = NAME, ...`` and ``NAME.key = value``")
    description = Attribute("one line for humans")

    def build(settings, context):
        """A new ``IAppHandler`` for one application.

        ``settings`` maps the app section's ``NAME.key`` entries (without the prefix) to strings;
        ``context`` is an ``rtmpserver.requests.HandlerContext``.  Invalid or unknown settings
        raise ``rtmpserver.errors.ConfigError`` with a message naming the key.
        """


class IRelayConsumer(Interface):
    """Where a relay that plays from another server delivers what it receives (``rtmpserver.relay``).

    Timestamps are the origin's (32-bit, milliseconds); payloads are message bodies as they came.
    Called synchronously from the relay connection's data path: be quick, never block.
    """

    def relay_started():
        """The origin started sending the stream (NetStream.Play.Start or Play.PublishNotify)."""

    def metadata(timestamp, payload):
        """``onMetaData``: ``payload`` is its AMF0 body ("onMetaData", object), ``@setDataFrame`` removed."""

    def data(timestamp, payload):
        """Any other data message (onTextData, onCuePoint...): its AMF0 body."""

    def video(timestamp, payload):
        """One video message body."""

    def audio(timestamp, payload):
        """One audio message body."""

    def relay_stopped(reason):
        """The stream ended upstream (unpublished, connection lost, refused); may start again later."""


class IRelayFeeder(Interface):
    """What feeds a push relay (``rtmpserver.relay.manager.Relay`` in publish mode), e.g. a hub sink."""

    def relay_ready():
        """The upstream accepted the publish (NetStream.Publish.Start): send headers, start at a keyframe."""

    def relay_writable():
        """The upstream connection drained after reporting full: send what is queued."""

    def relay_down(reason):
        """The upstream connection is gone (a new one is being made while the relay is wanted)."""
