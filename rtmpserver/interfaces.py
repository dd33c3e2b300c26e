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


class ISessionView(Interface):
    """What handlers see of the client behind a request (``request.session``), whatever its protocol."""

    id = Attribute("an int naming the client (``clientid`` in notify, /stat and control)")
    peer = Attribute("``host:port`` of the client")
    host = Attribute("the client's IP address, text form")
    app = Attribute("the application, or None before an RTMP connect")
    protocol = Attribute('"rtmp", "rtmps", "http-flv" or "hls"')
    connect_params = Attribute("the RTMP connect object (tcUrl, flashVer, ..., ``args``); for HTTP viewers only ``tcUrl`` and ``args``")
    data = Attribute("a dict handlers may attach things to, for the life of the session")
    closed = Attribute("True once the client has gone")


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

    HTTP viewers go through the same chain: an HTTP-FLV request and an HLS playlist request run
    ``play`` (``request.session.protocol`` is ``http-flv`` or ``hls``, ``args`` come from the URL's
    query string; there is no ``connect``), and ``close_stream`` gets a ``StreamClosed`` with role
    ``player`` when the FLV response ends or the HLS viewer has been idle for the listener's
    ``hls_viewer_timeout``.  HLS segments are not decided one by one: they need the viewer token
    the playlist decision put in their URIs.
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
