"""Interfaces between the layers: the contracts handlers, sinks and the server hold each other to (docs/plugins.md)."""

from zope.interface import Attribute, Interface


class IMediaSink(Interface):
    """Something a live stream fans out to: a player, a recorder, an HLS segmenter, an HTTP-FLV client.

    Sinks are called synchronously from the publisher's data path, so they must be quick and must
    never block: buffering and dropping are the sink's own business (bounded).
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


class IHandlerService(Interface):
    """Optional for a handler: it owns something that lives as long as the server (an HTTP
    connection pool, open recording files).  The service that runs the server calls
    ``start_service`` when it starts and ``stop_service`` when it stops, after every session has
    ended (or the shutdown timeout passed).  ``stop_service`` may return a Deferred, which the
    server waits for, bounded by the same timeout; a failure of either is logged."""

    def start_service():
        """The server is starting; returns None or a Deferred (not waited for)."""

    def stop_service():
        """The server is stopping and no session is left; release everything. None or a Deferred."""


class IRecordingController(Interface):
    """A handler that records live streams on demand (``/control/record/start|stop``)."""

    def start(stream):
        """Start recording ``stream`` (a ``LiveStream`` or its name); returns an ``IRecording``.

        Raises ``LookupError`` when there is no such live stream, ``ValueError`` when it cannot
        be recorded now (e.g. already recording)."""

    def stop(stream):
        """Stop recording ``stream``; returns the path of the file that was written, or None."""


class IRecording(Interface):
    """One recording in progress."""

    paths = Attribute("the files written so far, oldest first (a recording may be split)")


class IRecordingObserver(Interface):
    """Wants to hear about every finished recording file of its application (notify's ``on_record_done``)."""

    def recording_done(done):
        """``done`` is an ``rtmpserver.handlers.record.RecordingDone``. Must not raise."""


class IRecordingSource(Interface):
    """Announces finished recording files to observers in the same application."""

    def add_observer(observer):
        """Call ``observer.recording_done(done)`` (an ``IRecordingObserver``) for each finished file."""


class IHLSProvider(Interface):
    """What the HTTP site serves under ``/hls/<app>/``: a handler that segments its app's streams."""

    def render_hls(request, app, filename):
        """Answer ``/hls/<app>/<filename>`` (names already checked by the site); returns the body."""
