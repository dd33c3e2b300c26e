"""The handlers that ship with rtmpserver, registered like any third-party plugin."""

from rtmpserver.handlers.access import factory as access  # noqa: F401
from rtmpserver.handlers.auth import factory as auth  # noqa: F401
from rtmpserver.handlers.exec import factory as exec_  # noqa: F401
from rtmpserver.handlers.hls import factory as hls  # noqa: F401
from rtmpserver.handlers.live import factory as live  # noqa: F401
from rtmpserver.handlers.notify import factory as notify  # noqa: F401
from rtmpserver.handlers.record import factory as record  # noqa: F401
from rtmpserver.handlers.relay import factory as relay  # noqa: F401
from rtmpserver.handlers.vod import factory as vod  # noqa: F401
