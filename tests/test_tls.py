"""Tests for rtmpserver.tls: endpoint parsing and the server TLS context (in-memory handshakes)."""

from __future__ import annotations

import datetime
import inspect

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import endpoints
from twisted.internet.testing import MemoryReactor

from rtmpserver import tls


def make_cert(directory, kind: str = "rsa", name: str = "server"):
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


@pytest.fixture(scope="module", params=["rsa", "ecdsa"])
def ctx(request, tmp_path_factory):
    key, cert = make_cert(tmp_path_factory.mktemp(request.param), request.param)
    return tls.server_context({"privateKey": key, "certKey": cert})


def handshake(server_ctx, client_ctx, sent=None):
    """Run a TLS handshake between two memory-BIO connections; returns (server, client).

    ``sent``, a list, receives the sizes of the server's writes after its handshake completed
    (where TLS 1.3 NewSessionTickets go)."""
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    server_done = False
    for _ in range(20):
        for a, b in ((client, server), (server, client)):
            try:
                a.do_handshake()
                if a is server:
                    server_done = True
            except SSL.WantReadError:
                pass
            try:
                data = a.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                if a is server and server_done and sent is not None:
                    sent.append(len(data))
                b.bio_write(data)
    client.do_handshake()
    server.do_handshake()
    return server, client


def client_ctx(min_version=None, max_version=None, ciphers=None):
    c = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if min_version:
        c.set_min_proto_version(min_version)
    if max_version:
        c.set_max_proto_version(max_version)
    if ciphers:
        c.set_cipher_list(ciphers)
    return c


# -- parsing ---------------------------------------------------------------------------------------


def test_twisted_ssl_parser_is_what_parse_ssl_assumes():
    """parse_ssl relies on Twisted's private endpoints._parse and on the positional order of its
    ssl: parser; if a Twisted upgrade changes either, this fails instead of listeners silently
    reading their options wrong."""
    assert endpoints._parse(r"ssl:443:privateKey=a\:b:interface=127.0.0.1") == (
        ["ssl", "443"], {"privateKey": "a:b", "interface": "127.0.0.1"},
    )  # fmt: skip
    params = list(inspect.signature(endpoints._parseSSL).parameters)
    assert params[1:] == ["port", *tls._SSL_OPTIONS]


def test_parse_ssl_positional_and_keyword():
    assert tls.parse_ssl(r"ssl:1935:k.pem:c.pem") == {"port": 1935, "privateKey": "k.pem", "certKey": "c.pem"}
    assert tls.parse_ssl(r"ssl:port=1935:privateKey=/x\:y.pem:backlog=7:interface=\:\:1") == {
        "port": 1935, "privateKey": "/x:y.pem", "backlog": 7, "interface": "::1",
    }  # fmt: skip


@pytest.mark.parametrize(
    "description, message",
    [
        ("ssl:443:privateKey=k:sslmethod=TLSv1_2_METHOD", "sslmethod: not supported"),
        ("ssl:443:privateKey=k:sslmethod=TLS_METHOD", "sslmethod: not supported"),
        ("ssl:443:privateKey=k:bogus=1", "unknown parameter 'bogus'"),
        ("ssl:443", "needs privateKey"),
        ("ssl:privateKey=k", "a port number is required"),
        ("ssl:443:k:c:m:i:1:e:d:extra", "too many"),
    ],
)
def test_parse_ssl_refusals(description, message):
    with pytest.raises(tls.TLSConfigError, match=message):
        tls.parse_ssl(description)


def test_tcp_and_unix_go_to_twisted_unchanged():
    reactor = MemoryReactor()
    assert isinstance(tls.server_endpoint(reactor, "tcp:1935:interface=127.0.0.1"), endpoints.TCP4ServerEndpoint)
    assert isinstance(tls.server_endpoint(reactor, "tcp6:1935"), endpoints.TCP6ServerEndpoint)
    assert isinstance(tls.server_endpoint(reactor, "unix:/tmp/x.sock"), endpoints.UNIXServerEndpoint)


def test_ssl_endpoint_listens_with_our_context(tmp_path):
    key, cert = make_cert(tmp_path)
    reactor = MemoryReactor()
    ep = tls.server_endpoint(reactor, f"ssl:1936:privateKey={key}:certKey={cert}:interface=127.0.0.1:backlog=9")
    ep.listen(object())
    port, _factory, context_factory, backlog, interface = reactor.sslServers[0]
    assert (port, backlog, interface) == (1936, 9, "127.0.0.1")
    ctx = context_factory.getContext()
    assert tls._num_tickets().get(ctx) == 0


def test_key_certificate_mismatch_is_refused(tmp_path):
    key, _ = make_cert(tmp_path, name="a")
    _, cert = make_cert(tmp_path, name="b")
    with pytest.raises(SSL.Error):
        tls.server_endpoint(MemoryReactor(), f"ssl:1936:privateKey={key}:certKey={cert}")


# -- the context ----------------------------------------------------------------------------------


def test_tls13_works_and_sends_no_session_tickets(ctx):
    sent: list[int] = []
    server, client = handshake(ctx, client_ctx(), sent)
    assert server.get_protocol_version_name() == "TLSv1.3"
    assert tls._num_tickets().get(ctx) == 0
    assert sent == []  # nothing after the server's Finished: no NewSessionTicket
    server.send(b"x")
    client.bio_write(server.bio_read(65536))
    assert client.recv(1) == b"x"


def test_the_ticket_check_above_can_fail(tmp_path):
    """Control: with OpenSSL's default of two tickets the server does write after its Finished."""
    key, cert = make_cert(tmp_path)
    ctx = tls.server_context({"privateKey": key, "certKey": cert})
    assert tls._num_tickets().set(ctx, 2)
    sent: list[int] = []
    handshake(ctx, client_ctx(), sent)
    assert sent, "the NewSessionTicket records were not seen"


def test_num_tickets_self_check_passed():
    assert tls._num_tickets().problem == ""


def test_tls12_ecdhe_aead_works(ctx):
    server, _ = handshake(ctx, client_ctx(max_version=SSL.TLS1_2_VERSION))
    assert server.get_protocol_version_name() == "TLSv1.2"
    name = server.get_cipher_name()
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name


@pytest.mark.parametrize("ciphers", [b"AES128-SHA", b"ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA", b"AES128-GCM-SHA256",
                                     b"DHE-RSA-AES128-GCM-SHA256"])  # fmt: skip
def test_tls12_without_ecdhe_aead_is_refused(ctx, ciphers):
    with pytest.raises(SSL.Error):
        handshake(ctx, client_ctx(max_version=SSL.TLS1_2_VERSION, ciphers=ciphers))


def test_tls11_is_refused(ctx):
    c = client_ctx(max_version=SSL.TLS1_1_VERSION)
    c.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    with pytest.raises(SSL.Error):
        handshake(ctx, c)


def test_listener_raises_listen_failures_at_startup():
    """As strports.service did: a port that cannot be bound stops startup (twistd exits)."""
    from twisted.internet.error import CannotListenError

    class Busy(MemoryReactor):
        def listenTCP(self, port, factory, backlog=50, interface=""):
            raise CannotListenError(interface, port, OSError("in use"))

    service = tls.listener(Busy(), "tcp:1935:interface=127.0.0.1", object())
    with pytest.raises(CannotListenError):
        service.startService()
