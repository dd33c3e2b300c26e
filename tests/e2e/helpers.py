"""Shared machinery for the end-to-end tests: a real ``twistd rtmp`` process and real ffmpeg clients.

Everything that waits is bounded: the server must accept connections within ``START_TIMEOUT``, every
client subprocess has a wall-clock limit after which it is killed and the test fails with its stderr.
The clients are ffmpeg itself (the most common publisher and player in the wild); the pulled media is
judged with ffprobe and ffmpeg's decoder, never with our own parsers, so a bug shared by the server
and its codec cannot hide itself.  The one exception is ``FLVTagReader``: a player writes FLV to a pipe
and we note when each tag arrives, which is the only way to see *when* the first frame came.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# twistd lives next to the interpreter that runs the tests, so the server runs in the same venv.
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")

START_TIMEOUT = 15.0  # seconds for the server to accept TCP connections
STOP_TIMEOUT = 10.0  # seconds for the server to exit after SIGTERM

# The media every publisher sends: 30 fps with a keyframe every 30 frames, i.e. a 1 s GOP.
FPS = 30
GOP_SECONDS = 1.0


def server_env() -> dict[str, str]:
    """Environment for twistd: the checkout first on sys.path.

    ``make test`` installs the package in compat-editable mode, which already puts the checkout on
    sys.path; setting it here as well keeps the tests working in a venv where it was not installed,
    and makes sure twisted/plugins/rtmpserver_tap.py of *this* checkout is the one twistd finds.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (closed again, so the server can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_self_signed_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """Write ``name.key`` and ``name.crt`` (RSA 2048, CN=localhost, valid two days) into directory."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path = directory / f"{name}.key"
    cert_path = directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def render_config(sections: dict[str, dict[str, str | list[str]]]) -> str:
    """INI text in the format of notes/config.md; a list value becomes indented continuation lines."""
    lines: list[str] = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if isinstance(value, list):
                first, *rest = value
                lines.append(f"{key} = {first}")
                lines.extend(f"    {v}" for v in rest)
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess:
    """One ``twistd -n rtmp --config FILE`` process with its log in a file."""

    def __init__(self, workdir: Path, config_path: Path, ports: list[int]):
        self.workdir = workdir
        self.config_path = config_path
        self.ports = ports
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.terminated_by_test = False
        self._log_file = None

    def command(self) -> list[str]:
        return [TWISTD, "-n", "--pidfile=", "--logfile=-", "rtmp", "--config", str(self.config_path)]

    def start(self) -> None:
        self._log_file = open(self.log_path, "wb")
        # cwd is the test directory, not the checkout: relative paths in the config must resolve
        # against the config file's directory, not against wherever twistd happens to run.
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with status {self.proc.returncode} during start-up\n"
                    f"--- server log ---\n{tail(self.log_text())}"
                )
            if _port_accepts(pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"server did not accept connections on port {pending[0]} within {START_TIMEOUT} s\n"
                    f"--- server log ---\n{tail(self.log_text())}"
                )
            time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = STOP_TIMEOUT) -> tuple[int | None, float]:
        """SIGTERM, wait up to timeout; returns (exit status or None if it had to be killed, seconds)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.terminated_by_test = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                self._close_log()
                return None, time.monotonic() - t0
        self._close_log()
        return self.proc.returncode, time.monotonic() - t0

    def clean_stop_problem(self, rc: int | None) -> str | None:
        """Why an exit after our SIGTERM was not a clean stop, or None if it was.

        twistd re-raises the signal it stopped on once the reactor has shut down
        (twisted/scripts/twistd.py: runApp -> app._exitWithSignal), so a clean stop shows up as
        "killed by SIGTERM" (-15 here) after "Server Shut Down." in the log; status 0 is fine too.
        """
        if rc is None:
            return f"server did not exit within {STOP_TIMEOUT} s of SIGTERM (killed)"
        if rc not in (0, -signal.SIGTERM):
            return f"server exited with status {rc} after SIGTERM"
        if "Server Shut Down." not in self.log_text():
            return f"server exited with status {rc} after SIGTERM without twistd's 'Server Shut Down.'"
        return None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# --------------------------------------------------------------------------------------------------
# ffmpeg clients


class ClientProcess:
    """An ffmpeg/ffprobe subprocess with stderr in a file and a hard wall-clock limit."""

    def __init__(self, name: str, cmd: list[str], workdir: Path, stdout=subprocess.DEVNULL):
        self.name = name
        self.cmd = cmd
        self.stderr_path = workdir / f"{name}.stderr.txt"
        self._stderr = open(self.stderr_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self._stderr, cwd=workdir
        )
        self.ended: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        rc = self.proc.poll()
        return (
            f"{self.name} (pid {self.pid}, status {rc}): {' '.join(self.cmd)}\n"
            f"--- {self.name} stderr ---\n{tail(self.stderr_text(), 30)}"
        )

    def wait(self, timeout: float) -> int:
        """Wait for exit; a client still running after timeout is killed and the test fails."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} still running after {timeout} s, killed\n{self.describe()}") from None
        self._finish()
        return rc

    def wait_ok(self, timeout: float) -> None:
        rc = self.wait(timeout)
        assert rc == 0, f"{self.name} failed\n{self.describe()}"

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None:
            self._finish()
        return rc

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._finish()

    def _finish(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()
        if not self._stderr.closed:
            self._stderr.close()


def require_tools() -> tuple[str, str]:
    """Paths of ffmpeg and ffprobe. Missing tools fail the test: CI (make test) installs them."""
    import shutil

    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    missing = [n for n, p in (("ffmpeg", ffmpeg), ("ffprobe", ffprobe)) if p is None]
    if missing:
        raise AssertionError(
            f"{' and '.join(missing)} not found on PATH; the end-to-end tests need them "
            f"(`make system-deps` installs them)"
        )
    return ffmpeg, ffprobe


def publish_command(url: str, seconds: float, size: str = "320x240", tone: int = 440) -> list[str]:
    """A live H.264 + AAC publisher paced at real time (-re), 30 fps, 1 s GOP."""
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}",
        "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=44100",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(int(FPS * GOP_SECONDS)), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k",
        "-t", str(seconds),
        # A stalled server must not hang the publisher forever (microseconds).
        "-rw_timeout", "10000000",
        "-f", "flv", "-flvflags", "no_duration_filesize", url,
    ]  # fmt: skip


def play_command(url: str, seconds: float | None) -> list[str]:
    """A player copying what the server sends, unchanged, to FLV on stdout.

    ``-copyinkf`` matters: without it ffmpeg's stream copy silently drops video before the first
    keyframe, which would hide a server that starts a late joiner mid-GOP.
    """
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-rw_timeout", "10000000",  # give up after 10 s without data (microseconds)
        "-i", url,
    ]  # fmt: skip
    if seconds is not None:
        cmd += ["-t", str(seconds)]
    cmd += ["-c", "copy", "-copyinkf", "-flush_packets", "1", "-f", "flv", "pipe:1"]
    return cmd


@dataclass
class Tag:
    """One FLV tag as it arrived from a player's stdout."""

    arrived: float  # time.monotonic()
    type: int  # 8 audio, 9 video, 18 script data
    timestamp: int  # ms
    size: int
    first_byte: int | None  # audio: SoundFormat/rate/size/type; video: FrameType/CodecID
    packet_type: int | None  # AVCPacketType or AACPacketType: 0 sequence header, 1 frame

    @property
    def is_video_frame(self) -> bool:
        """An H.264 frame (CodecID 7, AVCPacketType 1), not a sequence header."""
        return self.type == 9 and self.first_byte is not None and self.first_byte & 0x0F == 7 and self.packet_type == 1

    @property
    def is_audio_frame(self) -> bool:
        """An AAC frame (SoundFormat 10, AACPacketType 1), not the AudioSpecificConfig."""
        return self.type == 8 and self.first_byte is not None and self.first_byte >> 4 == 10 and self.packet_type == 1

    @property
    def is_keyframe(self) -> bool:
        return self.type == 9 and self.first_byte is not None and (self.first_byte >> 4) == 1


@dataclass
class FLVTagReader:
    """Copies a player's FLV stdout to a file and notes when each tag arrived."""

    out_path: Path
    tags: list[Tag] = field(default_factory=list)
    total_bytes: int = 0

    def run(self, stream) -> None:
        buf = bytearray()
        offset = 0  # parse position in buf
        header_done = False
        with open(self.out_path, "wb") as out:
            while True:
                chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
                if not chunk:
                    break
                now = time.monotonic()
                out.write(chunk)
                self.total_bytes += len(chunk)
                buf += chunk
                if not header_done:
                    if len(buf) < 13:
                        continue
                    offset = 13  # FLV header (9) + PreviousTagSize0 (4)
                    header_done = True
                while len(buf) - offset >= 11:
                    tag_type = buf[offset] & 0x1F
                    size = int.from_bytes(buf[offset + 1 : offset + 4], "big")
                    if len(buf) - offset < 11 + size + 4:
                        break
                    ts = int.from_bytes(buf[offset + 4 : offset + 7], "big") | (buf[offset + 7] << 24)
                    body = buf[offset + 11 : offset + 11 + size]
                    first = body[0] if size else None
                    second = body[1] if size > 1 else None
                    self.tags.append(Tag(now, tag_type, ts, size, first, second))
                    offset += 11 + size + 4
                if offset > 1 << 20:
                    del buf[:offset]
                    offset = 0

    def video_frames(self) -> list[Tag]:
        return [t for t in self.tags if t.is_video_frame]

    def audio_frames(self) -> list[Tag]:
        return [t for t in self.tags if t.is_audio_frame]


class Player(ClientProcess):
    """ffmpeg pulling a stream; the copy lands in ``out_path`` and its tags in ``reader.tags``."""

    def __init__(self, name: str, url: str, workdir: Path, seconds: float | None):
        super().__init__(name, play_command(url, seconds), workdir, stdout=subprocess.PIPE)
        self.out_path = workdir / f"{name}.flv"
        self.reader = FLVTagReader(self.out_path)
        self._thread = threading.Thread(target=self.reader.run, args=(self.proc.stdout,), daemon=True)
        self._thread.start()

    def _finish(self) -> None:
        self._thread.join(timeout=5)
        super()._finish()

    def first_video_delay(self) -> float | None:
        """Seconds from process start to the first video frame arriving on stdout."""
        frames = self.reader.video_frames()
        return frames[0].arrived - self.started if frames else None


# --------------------------------------------------------------------------------------------------
# Judging a pulled file with ffprobe / ffmpeg


def _run(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} did not finish within {timeout} s") from e


def ffprobe_json(path: Path, *args: str) -> dict:
    r = _run(["ffprobe", "-v", "error", "-of", "json", *args, str(path)])
    assert r.returncode == 0, f"ffprobe {' '.join(args)} {path} failed:\n{r.stderr}"
    return json.loads(r.stdout or "{}")


def streams(path: Path) -> list[dict]:
    return ffprobe_json(path, "-show_streams")["streams"]


def video_packets(path: Path) -> list[dict]:
    return ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pts_time,dts_time,flags,size",
                        "-show_packets")["packets"]  # fmt: skip


def video_frames(path: Path) -> list[dict]:
    return ffprobe_json(path, "-select_streams", "v:0", "-show_entries",
                        "frame=key_frame,pict_type,width,height,pts_time", "-show_frames")["frames"]  # fmt: skip


def audio_frame_count(path: Path) -> int:
    data = ffprobe_json(path, "-select_streams", "a:0", "-count_frames", "-show_entries", "stream=nb_read_frames",
                        "-show_streams")["streams"]  # fmt: skip
    return int(data[0]["nb_read_frames"]) if data else 0


def decode_errors(path: Path) -> str:
    """What ffmpeg's decoders complain about when decoding the whole file ('' = clean)."""
    r = _run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"])
    text = r.stderr.strip()
    if r.returncode != 0:
        text = f"(exit status {r.returncode})\n{text}"
    return text


def _rate(text: str) -> float:
    num, _, den = text.partition("/")
    return float(num) / float(den or 1) if float(den or 1) else 0.0


@dataclass
class MediaSummary:
    path: Path
    video: dict
    audio: dict
    video_frames: list[dict]
    audio_frames: int

    @property
    def keyframes(self) -> int:
        return sum(1 for f in self.video_frames if f.get("key_frame") == 1)


def check_media(
    path: Path,
    *,
    size: tuple[int, int] = (320, 240),
    min_video_frames: int,
    max_video_frames: int | None = None,
    min_audio_frames: int = 1,
    context: str = "",
) -> MediaSummary:
    """Assert that a pulled file is clean H.264 + AAC of the given size and return what was found."""
    ctx = f"\n{context}" if context else ""
    assert path.exists() and path.stat().st_size > 13, f"{path.name} is empty{ctx}"
    errors = decode_errors(path)
    assert errors == "", f"{path.name} does not decode cleanly:\n{tail(errors, 20)}{ctx}"
    all_streams = streams(path)
    kinds = sorted(s["codec_type"] for s in all_streams)
    assert kinds == ["audio", "video"], f"{path.name}: expected one audio and one video stream, got {kinds}{ctx}"
    video = next(s for s in all_streams if s["codec_type"] == "video")
    audio = next(s for s in all_streams if s["codec_type"] == "audio")
    assert video["codec_name"] == "h264", f"{path.name}: video codec {video['codec_name']}{ctx}"
    assert audio["codec_name"] == "aac", f"{path.name}: audio codec {audio['codec_name']}{ctx}"
    assert (video["width"], video["height"]) == size, f"{path.name}: video {video['width']}x{video['height']}{ctx}"
    assert int(audio["sample_rate"]) == 44100, f"{path.name}: audio sample rate {audio['sample_rate']}{ctx}"
    frames = video_frames(path)
    sizes = {(f["width"], f["height"]) for f in frames}
    assert sizes <= {size}, f"{path.name}: decoded frames of sizes {sorted(sizes)}, expected only {size}{ctx}"
    n = len(frames)
    assert n >= min_video_frames, f"{path.name}: {n} video frames decoded, expected >= {min_video_frames}{ctx}"
    if max_video_frames is not None:
        assert n <= max_video_frames, f"{path.name}: {n} video frames decoded, expected <= {max_video_frames}{ctx}"
    n_audio = audio_frame_count(path)
    assert n_audio >= min_audio_frames, f"{path.name}: {n_audio} audio frames, expected >= {min_audio_frames}{ctx}"
    return MediaSummary(path, video, audio, frames, n_audio)


def rate_of(stream: dict, key: str) -> float:
    return _rate(stream.get(key, "0/0"))


def max_gap_ms(timestamps: list[int]) -> int:
    """Largest step between consecutive timestamps (0 for fewer than two)."""
    return max((b - a for a, b in zip(timestamps, timestamps[1:], strict=False)), default=0)


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll predicate until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --------------------------------------------------------------------------------------------------
# Raw sockets (garbage clients)


def simple_handshake(sock: socket.socket, timeout: float = 5.0) -> None:
    """Client side of the simple RTMP handshake: C0+C1, read S0+S1+S2, send C2 = echo of S1."""
    sock.settimeout(timeout)
    c1 = bytes(8) + os.urandom(1528)
    sock.sendall(b"\x03" + c1)
    need = 1 + 1536 + 1536
    got = bytearray()
    while len(got) < need:
        data = sock.recv(need - len(got))
        if not data:
            raise AssertionError(f"server closed during the handshake after {len(got)} bytes")
        got += data
    assert got[0] == 3, f"S0 is {got[0]}, expected 3"
    s1 = bytes(got[1:1537])
    sock.sendall(s1)


def wait_closed_by_peer(sock: socket.socket, timeout: float) -> tuple[bool, int, str]:
    """Read until EOF or reset; returns (closed, bytes read, how)."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    received = 0
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received, "reset"
        if not data:
            return True, received, "eof"
        received += len(data)
    return False, received, "still open"


def wait_live(port: int, app: str, name: str, timeout: float = 15.0) -> None:
    """Wait until ``app/name`` on the plain RTMP listener ``port`` delivers video, instead of a fixed
    sleep before a player joins: a probe player of our own plays live only and disconnects."""
    from tests.e2e.rtmpclient import Player

    probe = Player(port, app, timeout=timeout)
    try:
        probe.play(name, -1000.0)
        if not probe.wait_for(lambda: any(e.kind == "video" for e in probe.events), timeout):
            raise AssertionError(f"{app}/{name} delivered no video within {timeout} s")
    finally:
        probe.close()
