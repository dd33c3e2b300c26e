"""Synthetic publish stream shared by the benchmarks: H.264/AAC-shaped FLV message bodies.

The shape is what an encoder at a fixed bitrate sends: 30 fps video with a keyframe every 2 s
that is about ten times a P-frame, plus AAC frames (1024 samples, so 43/s at 44.1 kHz and 47/s at
48 kHz) of 200-400 bytes.  Nothing on the RTMP path looks past the first bytes of a video or
audio body (FLV specification, "AUDIODATA"), but an HLS segmenter does: it reads the AVC sequence
header's SPS/PPS and walks each frame's length-prefixed NAL units (ISO/IEC 14496-15 5.3.4.2.1)
to find IDRs and to write Annex B.  So each video body is one NAL unit (IDR, type 5, or non-IDR
slice, type 1) with a 4-byte length, as lengthSizeMinusOne = 3 in the sequence header says.  Its
contents after the NAL header are random: the structure is valid, the pictures are not decodable.
"""

from __future__ import annotations

import random
import struct

FPS = 30
GOP_SECONDS = 2
KEY_RATIO = 10  # keyframe size / P-frame size

# The AVC and AAC sequence headers FFmpeg 5.1 (libx264 320x240, AAC LC 44.1 kHz mono) sent in
# tests/data/ffmpeg-publish.c2s.bin; servers parse them (nginx-rtmp reads the SPS), players only
# need them to be present.
AVC_SEQUENCE_HEADER = bytes.fromhex(
    "1700000000"  # keyframe|AVC, packet type 0 (sequence header), composition time 0
    "01f4000dffe1001867f4000d91968141fb0110000003001000000303c0f142aa01000568ce0f1920fff8f800"
)
AAC_SEQUENCE_HEADER = bytes.fromhex("af00120856e500")

# After the 5-byte AVC header, the 4-byte NAL unit length and the 1-byte NAL header, each video
# body carries its send time (time.time_ns(), 8 bytes) and a frame sequence number (4 bytes), so
# players measure latency and see gaps.
STAMP = struct.Struct(">QI")
STAMP_OFFSET = 10
_NAL_IDR = 0x65  # forbidden_zero 0, nal_ref_idc 3, nal_unit_type 5 (H.264 table 7-1)
_NAL_SLICE = 0x41  # nal_ref_idc 2, nal_unit_type 1 (coded slice of a non-IDR picture)


def frame_sizes(video_bps: int, fps: int = FPS, gop_seconds: float = GOP_SECONDS) -> tuple[int, int]:
    """(keyframe bytes, P-frame bytes) so a GOP averages ``video_bps``."""
    gop = int(fps * gop_seconds)
    per_gop = video_bps / 8 * gop_seconds
    p = per_gop / (gop - 1 + KEY_RATIO)
    return int(p * KEY_RATIO), int(p)


class PayloadPool:
    """Random bytes to slice bodies from (generating random bytes per frame would dominate)."""

    def __init__(self, seed: int = 1, size: int = 1 << 20) -> None:
        self.rng = random.Random(seed)
        self.data = self.rng.randbytes(size)

    def take(self, n: int) -> bytes:
        start = self.rng.randrange(0, len(self.data) - n) if n < len(self.data) else 0
        return self.data[start : start + n]


def video_body(pool: PayloadPool, size: int, keyframe: bool, send_ns: int = 0, seq: int = 0) -> bytes:
    head = b"\x17\x01\x00\x00\x00" if keyframe else b"\x27\x01\x00\x00\x00"
    rest = pool.take(max(0, size - STAMP_OFFSET - STAMP.size))
    nal_size = 1 + STAMP.size + len(rest)
    return b"".join((head, nal_size.to_bytes(4, "big"), bytes((_NAL_IDR if keyframe else _NAL_SLICE,)),
                     STAMP.pack(send_ns, seq), rest))


def audio_body(pool: PayloadPool, size: int) -> bytes:
    return b"\xaf\x01" + pool.take(size - 2)


def stream_messages(seconds: float, video_bps: int, audio_rate: float = 46.875, seed: int = 1) -> list[tuple[int, int, bytes]]:
    """[(type_id, timestamp ms, payload)] in send order for ``seconds`` of media.

    Frame sizes vary by +-20% around the average, as an encoder's do.
    """
    pool = PayloadPool(seed)
    rng = random.Random(seed + 1)
    key, p = frame_sizes(video_bps)
    gop = FPS * GOP_SECONDS
    events: list[tuple[float, int, int, bytes]] = []
    n_video = int(seconds * FPS)
    for i in range(n_video):
        t = i * 1000.0 / FPS
        is_key = i % gop == 0
        size = int((key if is_key else p) * rng.uniform(0.8, 1.2))
        events.append((t, 1, 9, video_body(pool, size, is_key, 0, i)))
    n_audio = int(seconds * audio_rate)
    for j in range(n_audio):
        t = j * 1000.0 / audio_rate
        events.append((t, 0, 8, audio_body(pool, rng.randint(200, 400))))
    events.sort(key=lambda e: (e[0], e[1]))
    return [(type_id, int(t), payload) for t, _, type_id, payload in events]
