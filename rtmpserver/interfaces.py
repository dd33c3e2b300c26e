"""Interfaces between the layers: the contracts handlers, sinks and the server hold each other to (docs/plugins.md)."""

from zope.interface import Attribute, Interface


class IMediaSink(Interface):
    """Something a live stream fans out to: a player, a recorder, an HLS segmenter, an HTTP-FLV client.

    Sinks are called synchronously from the publisher's data path, so they must be quick and must
    never block: buffering and dropping are the sink's own business (bounded).

    Life cycle: ``LiveStream.add_sink`` attaches the sink (``stream_started`` at once if the stream
    has a publisher), then any number of ``stream_started`` / ``frame``... / ``stream_stopped``
    rounds as publishers come and go, until the sink leaves with ``LiveStream.remove_sink``.  A
    sink that raises is removed by the stream and, if it provides ``IDetachableSink``, told so
    with ``detach()``; the other sinks and the publisher carry on.
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
    protocol = Attribute('"rtmp", "rtmps", "rtmpt", "rtmpts", "http-flv", "ws-flv" or "hls"')
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


class IDetachableSink(IMediaSink):
    """A media sink that holds something to release when it leaves its stream (a player's backlog)."""

    def detach():
        """Leave the stream (``LiveStream.remove_sink``) and drop what is queued. Idempotent.

        Called by the sink's owner when its client goes away, and by the stream when the sink
        raised; it must not raise itself.
        """


class IPlayerStream(IDetachableSink):
    """A client playing a live stream over RTMP (one NetStream of a session)."""

    stream_id = Attribute("the NetStream id on its connection")
    name = Attribute("the stream name it plays")
    session = Attribute("its connection (an ``IMonitoredClient``)")

    def pause(flag):
        """``pause``/``pauseRaw``: True stops delivery, False resumes at the latest keyframe."""

    def seek():
        """``seek`` on a live stream: acknowledged, delivery resumes at the latest keyframe."""

    def set_receive_audio(flag):
        """``receiveAudio``."""

    def set_receive_video(flag):
        """``receiveVideo``: video comes back at a keyframe."""


class ICohortSink(IMediaSink):
    """A sink whose output, once it is steady, is the same bytes as other such sinks' output.

    Players of one live stream that receive every message and keep up are sent identical chunk
    headers and bodies (relative timestamps, shared bodies). The stream then puts them in an
    ``IOutputCohort``: the cohort works out each message's bytes once and hands them to every
    member, instead of a call chain per player per message (docs/architecture.md, "Fan-out").
    While a sink is a member the cohort holds its delivery state; the sink must ask its stream
    (``LiveStream.release``) to take it out before it changes or reads that state itself.
    """

    def cohort_key():
        """A hashable key of the cohorts this sink may join now, or None when it is not steady
        (paused, filtering, waiting for a keyframe, backlogged, its output full...)."""

    def new_cohort(stream):
        """A new, empty ``IOutputCohort`` for sinks of this sink's key on ``stream``."""


class IOutputCohort(Interface):
    """Sinks of one stream sent the same bytes for each message; made by ``ICohortSink.new_cohort``."""

    members = Attribute("the member sinks (a collection; the cohort's own, not to be changed)")

    def admit(sink):
        """Take ``sink`` in if its state lines up with the cohort's (the first one always does);
        returns whether it did."""

    def frame(frame):
        """Deliver ``frame`` to every member. Returns a list of sinks that left the cohort and
        must be given ``frame`` on their own (empty in the steady state); when the cohort cannot
        share a message (a data message, a sequence header) every member leaves."""

    def release(sink):
        """Hand ``sink`` its delivery state back and take it out."""

    def sync(sink):
        """Bring ``sink``'s counters (messages and bytes sent) up to date; it stays a member."""

    def position(sink):
        """The timestamp of the last message ``sink`` was sent, as its own ``last_ts`` would say."""


class IMonitoredClient(Interface):
    """A client as monitoring shows it: an RTMP connection, one of its NetStreams, an HTTP-FLV viewer."""

    def describe(now):
        """A dict with what /stat and /api/v1/clients show, at clock time ``now``.

        Keys: ``id``, ``address``, ``port``, ``protocol`` ("rtmp" / "http-flv"), ``app``,
        ``streams``, ``role``, ``time`` (seconds connected), ``flashver``, ``swfurl``, ``pageurl``,
        ``tcurl``, ``bytes_in``, ``bytes_out``, ``dropped``; a stream (publisher or player) adds
        ``timestamp`` (the last timestamp sent to a player; 0 for a publisher) and a player's
        ``dropped`` counts that stream alone.
        """


class IServerMetrics(Interface):
    """What handlers get as ``HandlerContext.metrics``: a way to show what they count.

    There is one per server, shared by every application's handlers and by every ``[http:NAME]``
    site: collectors registered here appear on every site's ``/metrics`` next to the server's own
    ``rtmp_*`` families, and annotations appear as an ``extra`` object in ``/api/v1/streams`` and
    ``/api/v1/clients`` entries (and as ``<extra>`` in ``/stat``).  Annotation callables run at
    request time on the reactor thread: they must be quick and must not block; one that raises
    is logged and skipped.  Never put secrets (keys, tokens, passwords) in metrics or annotations.
    """

    registry = Attribute("the server's own ``prometheus_client.CollectorRegistry``")

    def register(collector):
        """Add a prometheus_client collector (a ``Counter``, ``Gauge``... made with
        ``registry=None``, or any object with ``collect()``) to the server's registry and return
        it.  Registering the same object again is a no-op; a metric name already registered by
        another collector, or one starting with ``rtmp_`` (the server's own), raises ValueError.
        """

    def shared(owner, make):
        """The collector ``make()`` built for ``owner`` (any object, e.g. your handler factory)
        in this server, built and registered on first use.  ``build()`` runs once per
        application; this gives all of a server's applications one collector."""

    def annotate_stream(annotate, app=None):
        """``annotate(app, name) -> dict`` adds fields to each stream's ``extra`` object
        (only streams of ``app`` when given)."""

    def annotate_client(annotate, app=None):
        """``annotate(app, client_id) -> dict`` adds fields to each client's ``extra`` object
        (``client_id`` is the ``SessionView.id`` of RTMP clients; only clients of ``app`` when
        given)."""


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
    """What the HTTP site serves under ``/hls/<app>/``: a handler that segments its app's streams.

    The site (``rtmpserver.http.viewers``) decides who may watch and serves the bytes; the
    provider only says which segmenter holds a stream's playlist and segments."""

    def segmenter(app, name):
        """The ``rtmpserver.media.hls.HLSSegmenter`` of live stream ``app/name``, or None."""

    max_blocked = Attribute("How many LL-HLS blocking requests (rfc8216bis 6.2.5.2) the site may hold for the app")


class IMonitoredHandler(Interface):
    """Optional for a handler: things it runs that monitoring shows (relays, supervised processes).

    ``/stat`` lists the rows under their application, ``/api/v1/relays`` and ``/api/v1/processes``
    list them as JSON.  Called at request time on the reactor thread: quick, never blocking, and
    never a secret in a row (URLs without query strings or credentials, no command lines)."""

    def monitor_rows(now):
        """A list of dicts; each has ``kind`` ("relay" or "process"), ``app`` and ``name``
        (the stream), plus the kind's fields (docs/handlers.md)."""


class ITunnelTransport(Interface):
    """The transport of an RTMP session carried inside another protocol (RTMPT in HTTP requests,
    ``rtmpserver.http.rtmpt``).  It has no socket: whatever would write to one uses its
    ``write``/``writeSequence``."""

    scheme = Attribute('the session protocol handlers see: "rtmpt", or "rtmpts" inside HTTPS')


class IStreamDirectory(Interface):
    """Which worker publishes ``app/name`` (``[server] workers``, docs/architecture.md "Workers").

    Owners are opaque ints (a worker's index).  Every call may complete later (the directory may
    live in another process, or on another machine), so results are Deferreds.  ``claim`` is
    atomic: of two workers claiming the same free name, one wins; a name held by another owner is
    settled by the app's ``publisher_clash`` policy, asked of the current owner.
    """

    def claim(app, name, owner, policy, stale_timeout):
        """A Deferred firing True when ``owner`` now holds ``app/name`` (it was free, already
        ``owner``'s, or the current owner gave it up under ``policy``), or False (refused)."""

    def release(app, name, owner):
        """``owner`` no longer publishes ``app/name``; a no-op when someone else holds it.  A Deferred."""

    def locate(app, name):
        """A Deferred firing with the owner of ``app/name``, or None."""

    def watch(callback):
        """Call ``callback(app, name, owner_or_None)`` on every change of ownership; returns a
        callable that stops the watch."""


class IHubObserver(Interface):
    """Told by the hub (``Hub.observers``) when streams gain or lose publishers and sinks.

    Called synchronously from the hub: be quick, never raise, never block.
    """

    def stream_published(stream, publisher):
        """``publisher`` started ``stream`` (a ``LiveStream``)."""

    def stream_unpublished(stream, publisher):
        """``publisher`` stopped publishing ``stream``."""

    def sink_added(stream, sink):
        """``sink`` attached to ``stream``."""

    def sink_removed(stream, sink):
        """``sink`` left ``stream``."""


class IVodStream(Interface):
    """One recorded file opened for playback: a sequence of RTMP media messages with seek.

    Times are milliseconds from the start of the file.  Reads are small (one tag or one sample
    at a time) and happen on the caller's thread; nothing is read ahead."""

    name = Attribute("the stream name the player asked for")
    duration_ms = Attribute("the file's duration in milliseconds (0 when unknown)")

    def metadata():
        """The onMetaData values (a dict): duration in seconds, width, height, codec ids..."""

    def sequence_headers():
        """Decoder configuration messages (``rtmpserver.media.vod.VodMessage``), to send before
        the first media message and again after every seek."""

    def seek(ms):
        """Continue from the keyframe at or before ``ms``; returns the time landed on (ms)."""

    def next_due_ms():
        """The timestamp of the message ``read()`` returns next, None at the end."""

    def read():
        """The next ``VodMessage`` (type 8 audio / 9 video, timestamp, payload), None at the end."""

    def close():
        """Release the file. Idempotent."""


class IVodProvider(Interface):
    """Optional for a handler: it serves recorded files to players (the ``vod`` handler).

    After the chain has decided a ``play`` (so access rules and keys apply to recorded streams as
    to live ones), the session asks the providers of its application, in chain order, for the
    name: the first one that has it plays it.  ``getStreamLength`` asks them too."""

    def open_stream(name):
        """An ``IVodStream`` for ``name``, or None when there is no such recorded stream (including
        names that would leave the provider's directory). Raises ``rtmpserver.errors.Rejected``
        when the file exists but cannot be played (malformed, unsupported codec)."""

    def buffer_limit_ms():
        """The most a player is sent ahead of real time, whatever buffer length it asks for."""
