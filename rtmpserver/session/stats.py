"""What one RTMP session counts, read by monitoring (/stat, /api, /metrics) and the access log."""

from __future__ import annotations

__all__ = ["SessionStats"]


class SessionStats:
    """Counters of one connection. The media path adds to ``media_bytes_out`` only."""

    __slots__ = ("bytes_in", "media_bytes_out", "dropped", "resyncs", "rejections", "roles", "stream_names")

    def __init__(self) -> None:
        self.bytes_in = 0  # bytes received from the peer
        self.media_bytes_out = 0  # audio/video/data bytes written to players (commands: the codec counts them)
        self.dropped = 0  # messages this connection's ended player streams dropped because they lagged
        self.resyncs = 0  # times those streams restarted at a keyframe after dropping
        self.rejections: dict[str, int] = {}  # hook -> requests the handler chain refused
        self.roles: set[str] = set()  # "publisher", "player"
        self.stream_names: set[str] = set()  # every stream published or played

    def rejected(self, hook: str) -> None:
        self.rejections[hook] = self.rejections.get(hook, 0) + 1

    def began(self, role: str, name: str) -> None:
        self.roles.add(role)
        self.stream_names.add(name)

    def add_player_counts(self, dropped: int, resyncs: int) -> None:
        self.dropped += dropped
        self.resyncs += resyncs

    @property
    def role(self) -> str:
        return "+".join(sorted(self.roles)) or "-"
