"""The TLS policy of ssl: listeners (rtmpserver/tls.py) against a real twistd, seen by real clients:
openssl s_client (versions, cipher suites, resumption), ffmpeg (RSA and ECDSA certificates) and
rtmpdump (librtmp + GnuTLS, which breaks on TLS 1.3 session tickets)."""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess

import pytest

from tests.e2e import helpers
from tests.e2e.helpers import FPS, check_media, simple_handshake

pytestmark = pytest.mark.e2e


def make_ecdsa_cert(directory, name: str = "ecdsa"):
    """P-256 key and self-signed certificate (CN=localhost) as name.key / name.crt."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def tls_server(e2e, kind: str = "rsa"):
    if kind == "rsa":
        key, cert = helpers.make_self_signed_cert(e2e.workdir)
    else:
        key, cert = make_ecdsa_cert(e2e.workdir)
    port, ssl_port = helpers.free_port(), helpers.free_port()
    sections = e2e.default_sections(port, ssl_port)
    sections["server"]["listen"] = [
        f"tcp:{port}:interface=127.0.0.1",
        f"ssl:{ssl_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    ]
    return e2e.start_process(e2e.write_config(sections), port, ssl_port)


def s_client(port: int, *args: str) -> str:
    """openssl s_client output (stdout+stderr); stdin is closed, so it ends after the handshake."""
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def test_openssl_s_client_sees_the_tls_policy(e2e, tmp_path):
    srv = tls_server(e2e)
    port = srv.ssl_port

    out = s_client(port, "-tls1_2", "-cipher", "AES128-SHA")  # static RSA key exchange, CBC, SHA-1
    assert "Cipher is (NONE)" in out and "alert handshake failure" in out, out

    # SECLEVEL=0 so that the client really offers TLS 1.1 and the refusal is the server's.
    out = s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert "Cipher is (NONE)" in out and "alert protocol version" in out, out

    out = s_client(port, "-tls1_3")
    assert "New, TLSv1.3, Cipher is TLS_" in out, out

    session = tmp_path / "tls12.session"
    out = s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-sess_out", str(session))
    assert "New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256" in out, out
    out = s_client(port, "-tls1_2", "-sess_in", str(session))
    assert "Reused, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256" in out, out


def test_tls13_sends_no_session_ticket(e2e):
    """A NewSessionTicket is written right after the server's handshake, before any application
    data, so once S0+S1+S2 of the RTMP handshake are read any ticket would have arrived."""
    srv = tls_server(e2e)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", srv.ssl_port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as sock:
            simple_handshake(sock)
            assert sock.version() == "TLSv1.3"
            assert not sock.session.has_ticket


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_ffmpeg_publishes_over_rtmps(e2e, kind):
    srv = tls_server(e2e, kind)
    pub = e2e.publish(srv.url(f"live/{kind}", tls=True), seconds=6)
    helpers.wait_live(srv.port, "live", kind)  # the player must join a running stream
    player = e2e.play(srv.url(f"live/{kind}"), seconds=3)
    player.wait_ok(timeout=20)
    check_media(player.out_path, min_video_frames=3 * FPS - 9, max_video_frames=3 * FPS + 5,
                min_audio_frames=120, context=e2e.context(pub, player))  # fmt: skip
    pub.wait_ok(timeout=15)


def test_rtmpdump_plays_over_tls13(e2e):
    """librtmp 2.4 with GnuTLS: fails 'RTMP_Connect1, handshake failed' if TLS 1.3 tickets come."""
    srv = tls_server(e2e)
    pub = e2e.publish(srv.url("live/dump"), seconds=10)
    helpers.wait_live(srv.port, "live", "dump")
    out = e2e.workdir / "rtmpdump.flv"
    proc = subprocess.run(
        # -m 4: librtmp ends 4 s after the last byte (no UnpublishNotify by default, docs/handlers.md live)
        ["rtmpdump", "-r", srv.url("live/dump", tls=True), "--live", "--stop", "4", "-m", "4", "-o", str(out)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "handshake failed" not in proc.stderr, proc.stderr[-2000:]
    streams = {s["codec_type"]: s for s in helpers.streams(out)}
    assert set(streams) == {"video", "audio"}, (streams, proc.stderr[-2000:])
    assert len(helpers.video_frames(out)) > 2 * FPS, proc.stderr[-2000:]
    assert helpers.audio_frame_count(out) > 60
    pub.wait_ok(timeout=20)
