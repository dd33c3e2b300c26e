"""Tests for rtmpserver.media.flv: tag body headers, the FLV writer/reader, aggregate messages.

Byte vectors are built by hand from the FLV spec (annex E) and Enhanced RTMP v2. The data file
tests/data/media-testsrc-320x240-aac.flv was made with FFmpeg 5.1 (libx264, native aac):

    ffmpeg -f lavfi -i testsrc=size=320x240:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
        -t 1 -pix_fmt yuv420p -c:v libx264 -preset veryfast -crf 35 -g 15 -c:a aac -b:a 32k -ac 2 \
        -f flv media-testsrc-320x240-aac.flv
"""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rtmpserver.errors import (
    FLVError,
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from rtmpserver.media import flv
from rtmpserver.media.codecs import (
    parse_audio_specific_config,
    parse_avc_decoder_config,
    parse_sps_dimensions,
)
from rtmpserver.media.flv import (
    TAG_AUDIO,
    TAG_SCRIPT,
    TAG_VIDEO,
    FLVReader,
    FLVTag,
    FLVTagTooLarge,
    FLVWriter,
    audio_info,
    encode_tag,
    file_header,
    is_audio_sequence_header,
    is_video_keyframe,
    is_video_sequence_header,
    parse_aggregate,
    read_file,
    video_info,
)

DATA_FILE = pathlib.Path(__file__).parent.parent / "data" / "media-testsrc-320x240-aac.flv"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def u24(v: int) -> bytes:
    return (v & 0xFFFFFF).to_bytes(3, "big")


# --------------------------------------------------------------------------- legacy video headers


def test_avc_sequence_header():
    info = video_info(b"\x17\x00\x00\x00\x00\x01\x64")
    assert info.codec == "avc1"
    assert info.frame_type == 1
    assert info.is_sequence_header and not info.is_keyframe and not info.is_sequence_end
    assert info.packet_type == 0
    assert info.header_size == 5
    assert info.composition_time == 0
    assert not info.enhanced and info.command is None


def test_avc_keyframe_and_inter_frame_composition_time():
    key = video_info(b"\x17\x01\x00\x00\x42" + b"\x00\x00\x00\x05\x65")
    assert key.is_keyframe and not key.is_sequence_header
    assert key.composition_time == 0x42
    assert key.header_size == 5 and key.packet_type == 1
    inter = video_info(b"\x27\x01\xff\xff\xfe")
    assert inter.frame_type == 2 and not inter.is_keyframe
    assert inter.composition_time == -2
    assert video_info(b"\x27\x01\x80\x00\x00").composition_time == -(1 << 23)
    assert video_info(b"\x27\x01\x7f\xff\xff").composition_time == (1 << 23) - 1


def test_avc_sequence_end_and_composition_time_ignored_outside_nalus():
    end = video_info(b"\x17\x02\x00\x00\x00")
    assert end.is_sequence_end and not end.is_sequence_header and not end.is_keyframe
    # The spec says CompositionTime is 0 unless AVCPacketType == 1, whatever the bytes say.
    assert video_info(b"\x17\x00\x00\x00\x10").composition_time == 0


def test_legacy_hevc_codec_id_12_uses_avc_layout():
    info = video_info(b"\x1c\x01\x00\x00\x21")
    assert info.codec == "hvc1" and info.is_keyframe and info.composition_time == 0x21
    assert video_info(b"\x1c\x00\x00\x00\x00").is_sequence_header


@pytest.mark.parametrize(
    "payload, codec, frame_type, key",
    [
        (b"\x12\xaa", 2, 1, True),  # Sorenson H.263 keyframe
        (b"\x22\xaa", 2, 2, False),
        (b"\x32\xaa", 2, 3, False),  # disposable inter frame
        (b"\x14\x00", 4, 1, True),  # On2 VP6
        (b"\x23", 3, 2, False),  # screen video, no body at all is still a header
    ],
)
def test_other_legacy_codecs(payload, codec, frame_type, key):
    info = video_info(payload)
    assert (info.codec, info.frame_type, info.is_keyframe) == (codec, frame_type, key)
    assert info.header_size == 1 and info.packet_type is None and not info.is_sequence_header


def test_legacy_command_frame():
    # Frame type 5 (video info/command frame): a UI8 command, no AVCPacketType.
    info = video_info(b"\x57\x01")
    assert info.frame_type == 5 and info.command == 1 and info.codec == "avc1"
    assert not info.is_keyframe and not info.is_sequence_header
    assert info.header_size == 2
    assert video_info(b"\x52\x00").command == 0


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x17", b"\x17\x01", b"\x17\x01\x00\x00", b"\x57", b"\x52", b"\x17\x03\x00\x00\x00", b"\x17\xff\x00\x00\x00"],
)
def test_bad_legacy_video_raises(payload):
    with pytest.raises(FLVError):
        video_info(payload)


# --------------------------------------------------------------------------- enhanced video headers


def test_enhanced_hevc_sequence_start():
    info = video_info(b"\x90hvc1\x01\x02\x03")
    assert info.enhanced and info.codec == "hvc1"
    assert info.frame_type == 1 and info.packet_type == 0
    assert info.is_sequence_header and not info.is_keyframe
    assert info.header_size == 5


def test_enhanced_coded_frames_x_has_no_composition_time():
    info = video_info(b"\x93hvc1\x00\x00\x00\x10")
    assert info.is_keyframe and info.packet_type == 3
    assert info.composition_time == 0 and info.header_size == 5


def test_enhanced_coded_frames_composition_time_only_for_avc_hevc_vvc():
    for fourcc in (b"hvc1", b"avc1", b"vvc1"):
        info = video_info(b"\x91" + fourcc + b"\xff\xff\xff" + b"data")
        assert info.composition_time == -1 and info.header_size == 8 and info.is_keyframe
    for fourcc in (b"av01", b"vp09", b"vp08"):
        info = video_info(b"\xa1" + fourcc + b"\xff\xff\xff")
        assert info.composition_time == 0 and info.header_size == 5
        assert info.frame_type == 2 and not info.is_keyframe


def test_enhanced_av1_inter_and_sequence_end():
    info = video_info(b"\xa1av01")
    assert info.codec == "av01" and info.frame_type == 2 and not info.is_keyframe
    end = video_info(b"\x92av01")
    assert end.is_sequence_end and not end.is_keyframe and not end.is_sequence_header


def test_enhanced_metadata_is_neither_keyframe_nor_header():
    info = video_info(b"\x94hvc1\x02\x00\x09colorInfo")
    assert info.packet_type == 4 and not info.is_keyframe and not info.is_sequence_header
    # With Metadata the frame type is ignored, so frame type 5 does not make it a command.
    meta_cmd = video_info(b"\xd4hvc1")
    assert meta_cmd.command is None and meta_cmd.codec == "hvc1"


def test_enhanced_mpeg2ts_sequence_start_counts_as_sequence_header():
    assert video_info(b"\x95av01\x80").is_sequence_header


def test_enhanced_command_frame_has_no_fourcc():
    info = video_info(b"\xd1\x00")
    assert info.enhanced and info.command == 0 and info.codec is None
    assert info.header_size == 2 and not info.is_keyframe


def test_enhanced_modex_is_skipped():
    # ModEx: size-1 = 2 -> 3 bytes TimestampOffsetNano, then (ModExType 0, PacketType 1).
    payload = b"\x97\x02\x01\x02\x03\x01hvc1\x00\x00\x05nalu"
    info = video_info(payload)
    assert info.packet_type == 1 and info.is_keyframe and info.codec == "hvc1"
    assert info.composition_time == 5
    assert info.header_size == 13 and payload[info.header_size :] == b"nalu"


def test_enhanced_modex_16_bit_size_and_chained():
    payload = b"\x97\xff\x01\x00" + bytes(257) + b"\x07" + b"\x00\x00" + b"\x03av01obu"
    info = video_info(payload)
    assert info.packet_type == 3 and info.codec == "av01" and info.is_keyframe
    assert payload[info.header_size :] == b"obu"


def test_enhanced_multitrack_one_track():
    payload = b"\x96\x00avc1\x00config"
    info = video_info(payload)
    assert info.multitrack and info.is_sequence_header and info.codec == "avc1"
    assert payload[info.header_size :] == b"config"


def test_enhanced_multitrack_many_tracks():
    payload = b"\x96\x11hvc1\x00" + u24(7) + b"\x00\x00\x01" + b"nalu"
    info = video_info(payload)
    assert info.multitrack and info.is_keyframe and info.composition_time == 1
    assert payload[info.header_size :] == b"nalu"


def test_enhanced_multitrack_many_codecs_takes_first_track_fourcc():
    payload = b"\xa6\x23av01\x02" + u24(3) + b"obu" + b"vp09\x03" + u24(1) + b"x"
    info = video_info(payload)
    assert info.codec == "av01" and info.packet_type == 3 and info.frame_type == 2
    assert payload[info.header_size : info.header_size + 3] == b"obu"


@pytest.mark.parametrize(
    "payload",
    [
        b"\x90",
        b"\x90hvc",
        b"\x91hvc1\x00\x00",  # CodedFrames without the full SI24
        b"\x98hvc1",  # reserved packet types
        b"\x9fhvc1",
        b"\xd0",  # command frame without command byte
        b"\x97",  # ModEx without size
        b"\x97\x02\x00\x00",  # ModEx data runs off the end
        b"\x97\xff\x01",  # truncated 16-bit ModEx size
        b"\x96",  # Multitrack without type byte
        b"\x96\x30hvc1\x00",  # reserved AvMultitrackType 3
        b"\x96\x06hvc1\x00",  # nested Multitrack
        b"\x96\x07hvc1\x00",  # ModEx inside Multitrack
        b"\x96\x01hvc1",  # missing trackId
        b"\x96\x11hvc1\x00\x00",  # truncated track size
    ],
)
def test_bad_enhanced_video_raises(payload):
    with pytest.raises(FLVError):
        video_info(payload)


# --------------------------------------------------------------------------- audio headers


def test_aac_sequence_header():
    payload = b"\xaf\x00\x12\x10"
    info = audio_info(payload)
    assert info.sound_format == 10 and info.codec == "mp4a"
    assert (info.rate, info.size, info.channels) == (44100, 16, 2)
    assert info.is_sequence_header and info.header_size == 2 and info.packet_type == 0
    config = parse_audio_specific_config(payload[info.header_size :])
    assert (config.object_type, config.sample_rate, config.channel_config) == (2, 44100, 2)


def test_aac_raw_and_legacy_formats():
    raw = audio_info(b"\xaf\x01\x21\x00")
    assert not raw.is_sequence_header and raw.packet_type == 1
    mp3 = audio_info(b"\x2e\xff\xfb")  # MP3, 44 kHz, 16-bit, mono
    assert (mp3.sound_format, mp3.codec, mp3.rate, mp3.size, mp3.channels) == (2, ".mp3", 44100, 16, 1)
    assert mp3.header_size == 1 and mp3.packet_type is None
    speex = audio_info(b"\xb2")  # Speex: 5.5 kHz field, 16-bit, mono
    assert (speex.sound_format, speex.codec, speex.rate, speex.size) == (11, 11, 5512, 16)
    pcm = audio_info(b"\x35")  # linear PCM LE, 11 kHz, 8-bit, stereo
    assert (pcm.rate, pcm.size, pcm.channels) == (11025, 8, 2)
    assert audio_info(b"\x79").rate == 22050


def test_enhanced_audio():
    start = audio_info(b"\x90Opus" + b"OpusHead")
    assert start.enhanced and start.codec == "Opus" and start.sound_format == 9
    assert start.is_sequence_header and start.header_size == 5
    assert start.rate is None and start.channels is None
    coded = audio_info(b"\x91mp4a\x21")
    assert not coded.is_sequence_header and coded.packet_type == 1
    assert audio_info(b"\x92fLaC").packet_type == 2
    assert audio_info(b"\x94ac-3\x01\x02").packet_type == 4
    modex = audio_info(b"\x97\x02\x00\x00\x01\x00Opus")
    assert modex.is_sequence_header and modex.header_size == 10
    multi = audio_info(b"\x95\x10ec-3\x01" + u24(2) + b"zz")
    assert multi.multitrack and multi.codec == "ec-3" and multi.packet_type == 0 and multi.header_size == 10


@pytest.mark.parametrize(
    "payload", [b"", b"\xaf", b"\xaf\x02", b"\x90Opu", b"\x93Opus", b"\x96Opus", b"\x9fOpus", b"\x95\x05Opus\x00"]
)
def test_bad_audio_raises(payload):
    with pytest.raises(FLVError):
        audio_info(payload)


# --------------------------------------------------------------------------- predicates


VIDEO_VECTORS = [
    b"\x17\x00\x00\x00\x00\x01",
    b"\x17\x01\x00\x00\x00",
    b"\x27\x01\x00\x00\x00",
    b"\x17\x02\x00\x00\x00",
    b"\x12\x00",
    b"\x57\x00",
    b"\x1c\x00\x00\x00\x00",
    b"\x90hvc1",
    b"\x91hvc1\x00\x00\x00",
    b"\x93hvc1",
    b"\xa1av01",
    b"\x95av01",
    b"\x97\x00\x00\x00hvc1",
    b"\x97\x00\x00\x03hvc1",
    b"\x96\x00avc1\x00",
    b"\x96\x03avc1\x00",
    b"\xd1\x00",
]


@pytest.mark.parametrize("payload", VIDEO_VECTORS)
def test_video_predicates_agree_with_video_info(payload):
    info = video_info(payload)
    assert is_video_keyframe(payload) == info.is_keyframe
    assert is_video_sequence_header(payload) == info.is_sequence_header


def test_predicates_on_known_vectors():
    assert is_video_sequence_header(b"\x17\x00\x00\x00\x00")
    assert not is_video_keyframe(b"\x17\x00\x00\x00\x00")
    assert is_video_keyframe(b"\x17\x01\x00\x00\x00")
    assert not is_video_keyframe(b"\x27\x01\x00\x00\x00")
    assert is_video_sequence_header(b"\x90hvc1") and is_video_keyframe(b"\x93hvc1")
    assert is_video_keyframe(b"\x97\x00\x00\x03hvc1") and is_video_sequence_header(b"\x96\x00avc1\x00")
    assert is_audio_sequence_header(b"\xaf\x00\x12\x10") and not is_audio_sequence_header(b"\xaf\x01")
    assert is_audio_sequence_header(b"\x90Opus") and not is_audio_sequence_header(b"\x91Opus")
    assert not is_audio_sequence_header(b"\x2e\x00")


def test_predicates_are_false_for_empty_and_broken_payloads():
    for predicate in (is_video_keyframe, is_video_sequence_header, is_audio_sequence_header):
        assert predicate(b"") is False
    assert is_video_keyframe(b"\x17\x01") is False  # truncated CTS
    assert is_video_sequence_header(b"\x90hv") is False
    assert is_audio_sequence_header(b"\xaf") is False
    assert is_audio_sequence_header(b"\x90Op") is False


def test_info_accepts_memoryview_and_bytearray():
    payload = b"\x91hvc1\x00\x00\x07data"
    for view in (memoryview(payload), bytearray(payload), memoryview(payload)[0:9]):
        assert video_info(view) == video_info(payload)
        assert is_video_keyframe(view)
    assert audio_info(memoryview(b"\x90Opus")).codec == "Opus"


# Payloads whose first byte is interesting get mixed with random ones so that the structured
# branches (ModEx, Multitrack, AVC) are reached often.
first_bytes = st.sampled_from([0x17, 0x27, 0x57, 0x1C, 0x90, 0x91, 0x93, 0x94, 0x95, 0x96, 0x97, 0xA6, 0xD1, 0xAF, 0x9F])
payloads = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda b, rest: bytes([b]) + rest, first_bytes, st.binary(max_size=40)),
    st.builds(lambda b, rest: bytes([b, 0x00]) + rest, st.sampled_from([0x97, 0x96]), st.binary(max_size=12)),
)


def _outcome(parse, payload):
    try:
        return parse(payload)
    except FLVError:
        return None


@SETTINGS
@given(payloads)
@example(b"\x97\x00\x00\x06\x01hvc1\x00")
def test_random_video_payloads_raise_only_flv_error_and_predicates_agree(payload):
    info = _outcome(video_info, payload)
    assert is_video_keyframe(payload) == (info is not None and info.is_keyframe)
    assert is_video_sequence_header(payload) == (info is not None and info.is_sequence_header)
    if info is not None:
        assert 1 <= info.header_size <= len(payload)
        assert -(1 << 23) <= info.composition_time < (1 << 23)


@SETTINGS
@given(payloads)
def test_random_audio_payloads_raise_only_flv_error_and_predicate_agrees(payload):
    info = _outcome(audio_info, payload)
    assert is_audio_sequence_header(payload) == (info is not None and info.is_sequence_header)
    if info is not None:
        assert 1 <= info.header_size <= len(payload)


# --------------------------------------------------------------------------- writer


def test_file_header_bytes():
    assert file_header(True, True) == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert file_header(False, True)[4] == 0x01
    assert file_header(True, False)[4] == 0x04
    assert file_header(False, False)[4] == 0x00


def test_encode_tag_layout_with_extended_timestamp():
    tag = encode_tag(TAG_VIDEO, 0x12345678, b"abc")
    assert tag == (
        b"\x09"  # TagType
        b"\x00\x00\x03"  # DataSize
        b"\x34\x56\x78"  # Timestamp (low 24 bits)
        b"\x12"  # TimestampExtended
        b"\x00\x00\x00"  # StreamID
        b"abc"
        b"\x00\x00\x00\x0e"  # PreviousTagSize = 11 + 3
    )
    assert encode_tag(TAG_SCRIPT, 0, b"") == b"\x12" + bytes(10) + b"\x00\x00\x00\x0b"
    assert flv.tag_header(TAG_AUDIO, 0xFFFFFFFF, 0xFFFFFF) == b"\x08\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00"
    assert flv.previous_tag_size(5) == b"\x00\x00\x00\x10"


@pytest.mark.parametrize(
    "tag_type, timestamp, size",
    [(7, 0, 0), (20, 0, 0), (TAG_VIDEO, -1, 0), (TAG_VIDEO, 1 << 32, 0), (TAG_AUDIO, 0, 1 << 24), (TAG_AUDIO, 0, -1)],
)
def test_tag_header_rejects_misuse(tag_type, timestamp, size):
    with pytest.raises(LocalProtocolError):
        flv.tag_header(tag_type, timestamp, size)


def test_writer_tracks_offset_and_order():
    writer = FLVWriter(has_audio=False, has_video=True)
    with pytest.raises(LocalProtocolError):
        writer.write(TAG_VIDEO, 0, b"x")
    header = writer.start()
    assert header == file_header(False, True) and writer.offset == 13
    with pytest.raises(LocalProtocolError):
        writer.start()
    tag = writer.write(TAG_VIDEO, 40, b"\x17\x01\x00\x00\x00")
    assert tag == encode_tag(TAG_VIDEO, 40, b"\x17\x01\x00\x00\x00")
    assert writer.offset == 13 + len(tag)


# --------------------------------------------------------------------------- reader


tags_strategy = st.lists(
    st.tuples(
        st.sampled_from([TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT]),
        st.integers(0, 0xFFFFFFFF),
        st.binary(max_size=300),
    ),
    max_size=12,
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


@SETTINGS
@given(tags_strategy, st.booleans(), st.booleans(), st.lists(st.integers(0, 1 << 16), max_size=20))
def test_writer_reader_round_trip_over_any_split(tags, has_audio, has_video, cuts):
    writer = FLVWriter(has_audio, has_video)
    parts = [writer.start()]
    offsets = []
    for tag_type, timestamp, payload in tags:
        offsets.append(writer.offset)
        parts.append(writer.write(tag_type, timestamp, payload))
    data = b"".join(parts)
    assert writer.offset == len(data)

    reader = FLVReader()
    got: list[FLVTag] = []
    for piece in _split(data, cuts):
        got.extend(reader.feed(piece))
    reader.close()
    assert got == [FLVTag(t, ts, p, off) for (t, ts, p), off in zip(tags, offsets, strict=False)]
    assert (reader.has_audio, reader.has_video) == (has_audio, has_video)
    assert reader.offset == len(data)


def test_reader_returns_nothing_until_a_tag_is_complete():
    data = file_header() + encode_tag(TAG_AUDIO, 5, b"\xaf\x01xyz")
    reader = FLVReader()
    assert reader.feed(data[:-1]) == []
    assert reader.feed(data[-1:]) == [FLVTag(TAG_AUDIO, 5, b"\xaf\x01xyz", 13)]


def test_reader_reads_ffmpeg_file():
    tags = read_file(DATA_FILE)
    assert tags[0].type == TAG_SCRIPT and tags[0].payload.startswith(b"\x02\x00\x0aonMetaData")
    videos = [t for t in tags if t.type == TAG_VIDEO]
    audios = [t for t in tags if t.type == TAG_AUDIO]
    assert len(videos) == 32 and len(audios) == 46  # 30 frames + sequence header + end of sequence
    assert is_video_sequence_header(videos[0].payload)
    assert video_info(videos[-1].payload).is_sequence_end
    # -g 15 at 30 fps: keyframes at 0 ms and 500 ms.
    assert [t.timestamp for t in videos if is_video_keyframe(t.payload)] == [0, 500]
    assert all(not is_video_sequence_header(t.payload) for t in videos[1:])
    for stream in (videos, audios):
        assert all(a.timestamp <= b.timestamp for a, b in zip(stream, stream[1:], strict=False))
    assert is_audio_sequence_header(audios[0].payload)

    seq = videos[0].payload
    config = parse_avc_decoder_config(seq[video_info(seq).header_size :])
    assert parse_sps_dimensions(config.sps[0]) == (320, 240)
    aac = parse_audio_specific_config(audios[0].payload[2:])
    assert (aac.object_type, aac.sample_rate, aac.channel_config) == (2, 44100, 2)

    # Re-encoding gives back FFmpeg's bytes exactly (same header flags, StreamID 0, back-pointers).
    writer = FLVWriter(True, True)
    rebuilt = writer.start() + b"".join(writer.write(t.type, t.timestamp, t.payload) for t in tags)
    assert rebuilt == DATA_FILE.read_bytes()


def test_reader_offsets_point_at_tags_in_the_file():
    data = DATA_FILE.read_bytes()
    for tag in read_file(DATA_FILE):
        assert data[tag.offset] == tag.type
        assert data[tag.offset + 11 : tag.offset + 11 + len(tag.payload)] == tag.payload


def _good_file() -> bytes:
    return file_header() + encode_tag(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00") + encode_tag(TAG_AUDIO, 3, b"\xaf\x01")


@pytest.mark.parametrize(
    "data, where",
    [
        (b"FLX", "offset 0"),
        (b"flv\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00", "offset 0"),
        (b"FLV\x02\x05\x00\x00\x00\x09\x00\x00\x00\x00", "offset 3"),
        (b"FLV\x01\x05\x00\x00\x00\x0a\x00\x00\x00\x00", "offset 5"),
        (b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x01", "offset 9"),
    ],
)
def test_reader_rejects_bad_file_header(data, where):
    with pytest.raises(FLVError, match=where):
        FLVReader().feed(data)


def test_reader_rejects_bad_signature_as_soon_as_it_arrives():
    reader = FLVReader()
    assert reader.feed(b"F") == []
    with pytest.raises(FLVError):
        reader.feed(b"X")


def test_reader_rejects_wrong_back_pointer_naming_offset():
    data = bytearray(_good_file())
    # Back-pointer of the first tag (16 bytes of body... 11 + 5) sits right after it.
    bp = 13 + 11 + 5
    assert data[bp : bp + 4] == b"\x00\x00\x00\x10"
    data[bp + 3] = 0x11
    with pytest.raises(FLVError, match=f"offset {bp}.*offset 13"):
        FLVReader().feed(bytes(data))
    # Old writers sometimes got it wrong; the check can be turned off.
    tags = FLVReader(check_back_pointers=False).feed(bytes(data))
    assert [t.type for t in tags] == [TAG_VIDEO, TAG_AUDIO]


@pytest.mark.parametrize("first, what", [(0x49, "reserved"), (0x89, "reserved"), (0x29, "encrypted")])
def test_reader_rejects_reserved_and_filter_bits(first, what):
    data = bytearray(_good_file())
    data[13] = first
    with pytest.raises(FLVError, match=f"{what}.*offset 13"):
        FLVReader().feed(bytes(data))


def test_reader_bounds_tag_size_before_the_body_arrives():
    reader = FLVReader(max_tag_size=1000)
    header = file_header() + flv.tag_header(TAG_VIDEO, 0, 1001)
    with pytest.raises(FLVTagTooLarge, match="offset 13") as info:
        reader.feed(header)
    assert isinstance(info.value, LimitExceeded) and isinstance(info.value, FLVError)
    # A tag exactly at the bound is fine.
    ok = FLVReader(max_tag_size=1000).feed(file_header() + encode_tag(TAG_VIDEO, 0, bytes(1000)))
    assert len(ok[0].payload) == 1000
    with pytest.raises(LocalProtocolError):
        FLVReader(max_tag_size=1 << 24)


def test_reader_stays_failed():
    reader = FLVReader()
    with pytest.raises(FLVError):
        reader.feed(b"XYZ")
    with pytest.raises(FLVError, match="already failed"):
        reader.feed(file_header())
    with pytest.raises(FLVError, match="already failed"):
        reader.close()


def test_reader_close_detects_truncation():
    data = _good_file()
    with pytest.raises(FLVError, match="header"):
        r = FLVReader()
        r.feed(data[:12])
        r.close()
    r = FLVReader()
    r.feed(data[:-2])
    with pytest.raises(FLVError, match=f"offset {13 + 11 + 5 + 4}"):
        r.close()
    r = FLVReader()
    r.feed(data)
    r.close()


def test_read_file_rejects_truncated_file(tmp_path):
    path = tmp_path / "cut.flv"
    path.write_bytes(DATA_FILE.read_bytes()[:-3])
    with pytest.raises(FLVError, match="truncated"):
        read_file(path)


@SETTINGS
@given(st.binary(max_size=200), st.booleans(), st.lists(st.integers(0, 300), max_size=5))
def test_reader_random_bytes_raise_only_flv_error(body, with_header, cuts):
    data = (file_header() + body) if with_header else body
    reader = FLVReader(max_tag_size=100)
    try:
        for piece in _split(data, cuts):
            reader.feed(piece)
        reader.close()
    except FLVError:
        pass


@SETTINGS
@given(st.integers(0, len(_good_file()) - 1), st.integers(0, 255))
def test_reader_single_byte_corruption_raises_only_flv_error(index, value):
    data = bytearray(_good_file())
    data[index] = value
    reader = FLVReader()
    try:
        reader.feed(bytes(data))
        reader.close()
    except FLVError:
        pass


# --------------------------------------------------------------------------- aggregate messages


def test_parse_aggregate_returns_raw_relative_timestamps():
    body = encode_tag(TAG_VIDEO, 1000, b"\x27\x01\x00\x00\x00v") + encode_tag(TAG_AUDIO, 1023, b"\xaf\x01a")
    tags = parse_aggregate(body)
    assert tags == [
        FLVTag(TAG_VIDEO, 1000, b"\x27\x01\x00\x00\x00v", 0),
        FLVTag(TAG_AUDIO, 1023, b"\xaf\x01a", 11 + 6 + 4),
    ]
    assert parse_aggregate(b"") == []
    assert parse_aggregate(memoryview(body)) == tags


@SETTINGS
@given(tags_strategy.filter(bool), st.integers(0, 1 << 16))
def test_parse_aggregate_round_trip_and_truncation(tags, cut):
    encoded = [encode_tag(t, ts, p) for t, ts, p in tags]
    body = b"".join(encoded)
    parsed = parse_aggregate(body)
    assert [(t.type, t.timestamp, t.payload) for t in parsed] == tags
    boundaries = {sum(len(e) for e in encoded[:i]) for i in range(len(encoded) + 1)}
    cut %= len(body)
    if cut in boundaries:
        assert len(parse_aggregate(body[:cut])) == sorted(boundaries).index(cut)
    else:
        with pytest.raises(FLVError):
            parse_aggregate(body[:cut])


def test_parse_aggregate_rejects_bad_back_pointer():
    body = bytearray(encode_tag(TAG_VIDEO, 0, b"\x17\x01\x00\x00\x00"))
    body[-1] ^= 1
    with pytest.raises(FLVError, match="back-pointer.*offset 16"):
        parse_aggregate(bytes(body))


@SETTINGS
@given(st.binary(max_size=120))
def test_parse_aggregate_random_bytes_raise_only_flv_error(body):
    try:
        tags = parse_aggregate(body)
    except FLVError:
        return
    assert sum(11 + len(t.payload) + 4 for t in tags) == len(body)


def test_flv_error_is_a_remote_protocol_error():
    # The hub closes the publisher on RemoteProtocolError; these must all be in that family.
    assert issubclass(FLVError, RemoteProtocolError)
    assert issubclass(FLVTagTooLarge, RemoteProtocolError)


# -- video_flags: the one classifier the hub and the recorder share ---------------------------------


def _video_corpus():
    """Every first byte with each interesting second byte, a CTS and a FourCC where they go."""
    for b0 in range(256):
        for b1 in (0, 1, 2, 3, 5, 0x61):
            for tail in (b"", b"\x00\x00", b"\x00\x00\x00avc1\x00\x00\x00" + b"x" * 8, b"vc1\x00\x00\x00" + b"x" * 8):
                yield bytes((b0, b1)) + tail
    yield b""
    yield b"\x17"


def test_video_flags_agrees_with_the_full_parser():
    n = 0
    for payload in _video_corpus():
        try:
            info = flv.video_info(payload)
            expected = (info.is_keyframe, info.is_sequence_header)
        except FLVError:
            expected = (False, False)
        got = flv.video_flags(payload)
        if expected != got:
            # Only a truncated Enhanced frame may differ: the quick path does not check the CTS bytes.
            assert payload[0] & 0x80 and got == (True, False) and expected == (False, False), payload
        n += 1
        assert flv.is_video_keyframe(payload) == got[0]
    assert n > 5000


def test_video_flags_common_cases():
    assert flv.video_flags(b"\x17\x01\x00\x00\x00data") == (True, False)  # AVC keyframe
    assert flv.video_flags(b"\x27\x01\x00\x00\x00data") == (False, False)  # AVC inter frame
    assert flv.video_flags(b"\x17\x00\x00\x00\x00\x01\x64") == (False, True)  # AVC sequence header
    assert flv.video_flags(b"\x17\x02\x00\x00\x00") == (False, False)  # AVC end of sequence
    assert flv.video_flags(b"\x12data") == (True, False)  # Sorenson H.263 keyframe
    assert flv.video_flags(b"\x90hvc1\x01") == (False, True)  # Enhanced SequenceStart
    assert flv.video_flags(b"\x93hvc1frame") == (True, False)  # Enhanced CodedFramesX keyframe
    assert flv.video_flags(b"\xa3hvc1frame") == (False, False)  # Enhanced inter frame
    assert flv.video_flags(b"") == (False, False)
