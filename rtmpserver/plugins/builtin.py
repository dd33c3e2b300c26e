"""The handlers that ship with rtmpserver, registered like any third-party plugin."""

from rtmpserver.handlers.live import factory as live  # noqa: F401
from rtmpserver.handlers.hls import factory as hls  # noqa: F401
