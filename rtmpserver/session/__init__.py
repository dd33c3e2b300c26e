"""One RTMP connection's NetConnection and NetStreams (sans-transport).

``netconnection``: the ``Session`` (commands, state) and the ``Link`` it writes through;
``streams``: ``PublisherStream`` and ``PlayerStream`` (per-player commands); ``admission``: the
handler chain's decision on publish/play and publisher clashes; ``vod``: recorded playback
(``VodPlayer``); ``stats``: the counters monitoring and the access log read.
"""

from rtmpserver.session.netconnection import Link, Session, State
from rtmpserver.session.stats import SessionStats
from rtmpserver.session.streams import PlayerStream, PublisherStream

__all__ = ["Session", "Link", "State", "SessionStats", "PlayerStream", "PublisherStream"]
