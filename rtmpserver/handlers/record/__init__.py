"""``record``: live streams to FLV files, seekable once finished, playable after a crash.

One ``Recorder`` (an ``IMediaSink``, ``recorder.py``) per recorded publish writes files named by
the ``record.path`` template (``paths.py``); the bytes come from ``rtmpserver.media.flvwriter``,
whose docstring describes the crash-safe layout.  Every file starts with its metadata, the latest
sequence headers, then a keyframe (for audio only recordings, any audio frame) at timestamp 0;
later timestamps are the publisher's, unwrapped (32-bit wrap, RTMP 1.0 section 5.3.1) and rebased
to that first frame.  ``handler.py`` is the handler and its plugin factory, ``settings.py`` the
``record.*`` keys.

Nothing a publisher names can leave the directory the template puts recordings in: app and
stream names are reduced to ``[A-Za-z0-9._-]`` with leading dots removed before they are put into
the template (``sanitize``).
"""

from rtmpserver.handlers.record.handler import RecordFactory, RecordHandler, factory
from rtmpserver.handlers.record.paths import render_path, sanitize
from rtmpserver.handlers.record.recorder import Recorder, RecordingDone, _File
from rtmpserver.handlers.record.settings import MODES, RecordSettings, parse_settings
from rtmpserver.media.flvwriter import (
    _METADATA_TEMPLATE,
    METADATA_OFFSET,
    FLVRecording,
    _filler,
    metadata_reserve,
)

__all__ = [
    "MODES",
    "METADATA_OFFSET",
    "RecordSettings",
    "RecordingDone",
    "FLVRecording",
    "Recorder",
    "RecordHandler",
    "RecordFactory",
    "metadata_reserve",
    "parse_settings",
    "render_path",
    "sanitize",
    "factory",
    # internals the record tests reach
    "_File",
    "_METADATA_TEMPLATE",
    "_filler",
]
