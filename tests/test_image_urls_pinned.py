"""No DNS-rebinding window in the image URL fetch (server/image_urls.py): a host is resolved once
per hop, the address checked is the address connected to, and the Host header and TLS name stay
the host's.

The stand-in for a public server is a second loopback address, 127.0.0.2, that the tests' policy
allows; 127.0.0.1 plays the private service an attacker's DNS points at once the check is done.
Both listen on the same port, so only the address decides which one a request reaches. The
resolver is the policy's seam: it answers 127.0.0.2 first and 127.0.0.1 after."""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qwencli.server.image_urls import ImageUrlPolicy, ImageUrlRefused

PUBLIC = "127.0.0.2"  # what the tests' policy treats as public
PRIVATE = "127.0.0.1"


def only_the_stand_in(address) -> bool:
    return address == ipaddress.ip_address(PUBLIC)


class Recorder(BaseHTTPRequestHandler):
    """Answers /red.png and /to-rebind (a redirect to the rebinding host); logs path and Host."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.log.append((self.path, self.headers.get("Host")))  # type: ignore[attr-defined]
        if self.path == "/to-rebind":
            self.send_response(302)
            self.send_header("Location", f"http://rebind.test:{self.server.server_address[1]}/red.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"from " + self.server.server_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(address: str, port: int, context: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), Recorder)
    server.log = []  # type: ignore[attr-defined]
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def pair():
    """The private server on 127.0.0.1 and the stand-in public one on 127.0.0.2, same port."""
    private = serve(PRIVATE, 0)
    public = serve(PUBLIC, private.server_address[1])
    yield private, public, private.server_address[1]
    for server in (private, public):
        server.shutdown()
        server.server_close()


class Rebinding:
    """A resolver that answers the stand-in public address first and 127.0.0.1 after."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [PUBLIC if len(self.calls) == 1 else PRIVATE]


def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup(pair):
    private, public, port = pair
    resolve = Rebinding()
    policy = ImageUrlPolicy(allow_address=only_the_stand_in, resolve=resolve)
    assert policy.fetch(f"http://rebind.test:{port}/red.png") == b"from 127.0.0.2"
    assert resolve.calls == ["rebind.test"]  # resolved once; a second answer would be 127.0.0.1
    assert private.log == []  # the loopback service never saw a request
    assert public.log == [("/red.png", f"rebind.test:{port}")]  # the host's name in Host, not the address


def test_the_system_resolver_is_asked_once_too(pair, monkeypatch):
    """The same attack on the default resolver (socket.getaddrinfo, which the HTTP client's own
    connection would also ask): the second answer, 127.0.0.1, is never used."""
    import socket

    private, public, port = pair
    real, answers = socket.getaddrinfo, [PUBLIC, PRIVATE, PRIVATE]

    def rebinding(host, *args, **kwargs):
        return real(answers.pop(0) if host == "rebind.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    assert ImageUrlPolicy(allow_address=only_the_stand_in).fetch(f"http://rebind.test:{port}/red.png") == (
        b"from 127.0.0.2"
    )
    assert len(answers) == 2 and private.log == []


def test_a_redirect_hop_that_resolves_to_loopback_is_refused_before_connecting(pair):
    private, public, port = pair
    resolve = Rebinding()
    policy = ImageUrlPolicy(allow_address=only_the_stand_in, resolve=resolve)
    with pytest.raises(ImageUrlRefused, match="rebind.test is 127.0.0.1, a loopback, private or reserved"):
        policy.fetch(f"http://rebind.test:{port}/to-rebind")
    assert resolve.calls == ["rebind.test", "rebind.test"]  # each hop resolved once
    assert public.log == [("/to-rebind", f"rebind.test:{port}")]
    assert private.log == []


def test_a_host_with_any_refused_address_is_refused_whatever_comes_first(pair):
    private, _, port = pair
    policy = ImageUrlPolicy(allow_address=only_the_stand_in, resolve=lambda host, port: [PUBLIC, PRIVATE])
    with pytest.raises(ImageUrlRefused, match="127.0.0.1, a loopback"):
        policy.fetch(f"http://rebind.test:{port}/red.png")
    with pytest.raises(ImageUrlRefused, match="does not resolve"):
        ImageUrlPolicy(allow_address=only_the_stand_in, resolve=lambda host, port: []).fetch(
            f"http://nowhere.test:{port}/red.png"
        )
    assert private.log == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for images.test (openssl's CLI: no Python package needed)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=images.test",
         "-addext", "subjectAltName=DNS:images.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_https_is_pinned_too_with_the_host_name_as_sni_and_for_the_certificate(certificate):
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    seen: list[str | None] = []
    server_side.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment,misc,return-value]
    public = serve(PUBLIC, 0, server_side)
    port = public.server_address[1]
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        policy = ImageUrlPolicy(allow_address=only_the_stand_in, resolve=lambda host, p: [PUBLIC], verify=trust)
        assert policy.fetch(f"https://images.test:{port}/red.png") == b"from 127.0.0.2"
        assert seen == ["images.test"]  # SNI named the host, though the socket went to 127.0.0.2
        assert public.log == [("/red.png", f"images.test:{port}")]
        # The certificate is checked against the URL's host: another name on the same address fails.
        with pytest.raises(ImageUrlRefused, match="could not be fetched.*certificate"):
            policy.fetch(f"https://other.test:{port}/red.png")
    finally:
        public.shutdown()
        public.server_close()
