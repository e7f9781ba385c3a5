"""Remote image URLs (`qwen serve --allow-image-urls`, server/image_urls.py): the fence first, on a
loopback HTTP server this test starts (scheme, every hop's address, redirects, size cap, deadline),
then through a real `qwen serve` app with the tiny Qwen3-VL and the official openai and anthropic
clients. The loopback server is itself a "private" address: the default policy refuses it (tested),
and the tests that fetch from it allow 127.0.0.1 explicitly through `allow_address`."""

from __future__ import annotations

import base64
import io
import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from qwencli.server.image_urls import ImageUrlPolicy, ImageUrlRefused, public_only


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def loopback_too(address) -> bool:
    """The tests' policy: the default one, plus 127.0.0.1 (where the test's image server is)."""
    return address == ipaddress.ip_address("127.0.0.1") or public_only(address)


class Images(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    log: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).log.append(self.path)
        if self.path == "/slow.png":
            time.sleep(3)
        if self.path == "/chunked.bin":  # no Content-Length: the cap is counted while reading
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(8):
                block = b"x" * 4096
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def images():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Images)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    Images.routes = {
        "/red.png": (200, {"Content-Type": "image/png"}, png("red")),
        "/blue.png": (200, {"Content-Type": "image/png"}, png("blue")),
        "/text.png": (200, {"Content-Type": "image/png"}, b"just text"),
        "/big.bin": (200, {}, b"x" * 50_000),
        "/slow.png": (200, {}, png("red")),
        "/to-red": (302, {"Location": "/red.png"}, b""),
        "/to-localhost": (302, {"Location": f"http://localhost:{server.server_address[1]}/red.png"}, b""),
        "/to-private": (302, {"Location": "http://10.11.12.13/red.png"}, b""),
        "/to-metadata": (307, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


@pytest.fixture
def log():
    Images.log.clear()
    return Images.log


# -- the fence ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,public", [
    ("8.8.8.8", True), ("2606:4700::1111", True),
    ("127.0.0.1", False), ("127.8.9.10", False), ("::1", False), ("::ffff:127.0.0.1", False),
    ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False), ("100.64.0.1", False),
    ("169.254.169.254", False), ("fe80::1", False), ("fc00::1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("::ffff:10.0.0.1", False),
])
def test_the_default_policy_allows_public_addresses_only(text, public):
    assert public_only(ipaddress.ip_address(text)) is public


def test_the_default_policy_refuses_the_loopback_server_before_connecting(images, log):
    for url in (f"{images}/red.png", images.replace("127.0.0.1", "localhost") + "/red.png"):
        with pytest.raises(ImageUrlRefused, match="loopback, private or reserved address"):
            ImageUrlPolicy().fetch(url)
    assert log == []  # refused on the resolved address, not after a request


def test_an_allowed_loopback_server_is_fetched_with_redirects_followed(images, log):
    policy = ImageUrlPolicy(allow_address=loopback_too)
    assert policy.fetch(f"{images}/red.png") == png("red")
    assert policy.fetch(f"{images}/to-red") == png("red")
    assert log == ["/red.png", "/to-red", "/red.png"]


@pytest.mark.parametrize("path,words", [
    ("/to-private", "10.11.12.13, a loopback, private or reserved address"),
    ("/to-metadata", "169.254.169.254, a loopback, private or reserved address"),
    ("/to-file", "only http and https image URLs are fetched, not file://"),
    ("/to-localhost", "::1"),  # localhost resolves to ::1 as well: one refused address refuses the hop
    ("/loop", "more than 3 redirects"),
    ("/missing.png", "answered HTTP 404"),
    ("/big.bin", "is 50000 bytes; remote images are limited to 10000"),
    ("/chunked.bin", "is over 10000 bytes"),
])
def test_every_hop_is_checked_and_the_body_is_capped(images, log, path, words):
    policy = ImageUrlPolicy(allow_address=loopback_too, max_bytes=10_000)
    import socket

    if path == "/to-localhost" and all(i[0] != socket.AF_INET6 for i in socket.getaddrinfo("localhost", 80)):
        pytest.skip("localhost has no IPv6 address here")
    with pytest.raises(ImageUrlRefused, match=words.replace("(", r"\(").replace(".", r"\.")):
        policy.fetch(images + path)
    if path.startswith("/to-"):
        assert log == [path]  # the redirect's target was never requested


def test_a_url_that_is_not_http_is_refused(images):
    for url in ("file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "http:///nohost.png"):
        with pytest.raises(ImageUrlRefused):
            ImageUrlPolicy().fetch(url)


def test_a_slow_server_hits_the_deadline(images):
    started = time.monotonic()
    with pytest.raises(ImageUrlRefused, match="did not answer within 1 s"):
        ImageUrlPolicy(allow_address=loopback_too, timeout=1.0).fetch(f"{images}/slow.png")
    assert time.monotonic() - started < 2.5


# -- through qwen serve ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers():
    """One app per policy on the same tiny VL model: URLs refused (the default), fetched under the
    default policy (which refuses the loopback image server), and fetched with 127.0.0.1 allowed."""
    from qwencli.backends.base import LoadOptions
    from qwencli.resolved import ResolvedModel
    from qwencli.server.app import create_app
    from qwencli.server.config import ServerConfig
    from qwencli.server.static_source import StaticSource
    from tests.models import QWEN_TOKENIZER, build_vision, require
    from tests.serving import RunningServer, wait_until

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    model, projector = build_vision("gguf", tokenizer), build_vision("mmproj", tokenizer)
    policies = {"off": None, "default": ImageUrlPolicy(), "loopback": ImageUrlPolicy(allow_address=loopback_too)}
    running = {}
    for name, policy in policies.items():
        source = StaticSource({"tiny-vl": ResolvedModel(name="tiny-vl", format="gguf", path=model,
                                                        projector=projector)})
        config = ServerConfig(startup_models=("tiny-vl",) if name == "loopback" else (), image_urls=policy,
                              load=LoadOptions(context_length=2048))
        running[name] = RunningServer(create_app(config, source)).start()
    try:
        for server in running.values():
            assert wait_until(lambda s=server: httpx.get(s.base + "/health").status_code == 200, timeout=120)
        yield {name: server.base for name, server in running.items()}
    finally:
        for server in running.values():
            server.stop()


def ask(base: str, url: str, model: str = "tiny-vl"):
    import openai

    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is this?"}]
    out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                         temperature=0, max_tokens=8)
    return out.choices[0].message.content


@pytest.mark.slow
def test_qwen_serve_fetches_image_urls_only_when_allowed(servers, images, log):
    import openai

    pytest.importorskip("openai")
    inline = {c: ask(servers["loopback"], "data:image/png;base64," + base64.b64encode(png(c)).decode())
              for c in ("red", "blue")}
    assert inline["red"] != inline["blue"]
    # Allowed (127.0.0.1 explicitly): the fetched image is the inline one, token for token.
    assert ask(servers["loopback"], f"{images}/red.png") == inline["red"]
    assert ask(servers["loopback"], f"{images}/to-red") == inline["red"]
    assert ask(servers["loopback"], f"{images}/blue.png") == inline["blue"]
    log.clear()
    cases = [
        ("off", f"{images}/red.png", "unless the server runs with --allow-image-urls", "image_url_not_allowed"),
        ("default", f"{images}/red.png", "loopback, private or reserved address", "image_url_refused"),
        ("loopback", f"{images}/to-private", "10.11.12.13", "image_url_refused"),
        ("off", "file:///etc/passwd", "an image is a data: URL (base64) or an http(s) URL", None),
        ("loopback", "file:///etc/passwd", "only http and https image URLs are fetched, not file://",
         "image_url_refused"),
        ("loopback", f"{images}/text.png", "is not an image", "invalid_image"),
        ("loopback", f"{images}/missing.png", "answered HTTP 404", "image_url_refused"),
    ]
    for server, url, words, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            ask(servers[server], url)
        body = caught.value.body
        assert words in body["message"] and body["param"] == "messages[0].content[0].image_url", body
        assert body["code"] == code and body["type"] == "invalid_request_error"
        assert ask(servers["loopback"], f"{images}/red.png") == inline["red"]  # and it keeps serving
    assert "/red.png" in log and all(p in ("/red.png", "/to-private", "/text.png", "/missing.png") for p in log)
    # /health answers while a fetch waits 3 s on a slow server (the fetch runs off the event loop).
    answers = []
    slow = threading.Thread(target=lambda: answers.append(ask(servers["loopback"], f"{images}/slow.png")))
    slow.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert httpx.get(servers["loopback"] + "/health").status_code == 200
    assert time.monotonic() - started < 1.0
    slow.join()
    assert answers == [inline["red"]]


@pytest.mark.slow
def test_anthropic_url_sources_follow_the_same_policy(servers, images):
    anthropic = pytest.importorskip("anthropic")

    def reply(base: str, source: dict) -> str:
        client = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0, timeout=120)
        out = client.messages.create(model="tiny-vl", max_tokens=8, extra_body={"temperature": 0}, messages=[
            {"role": "user", "content": [{"type": "image", "source": source},
                                         {"type": "text", "text": "What is this?"}]}])
        return out.content[0].text

    inline = reply(servers["loopback"], {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(png("red")).decode()})
    assert reply(servers["loopback"], {"type": "url", "url": f"{images}/red.png"}) == inline
    for server, words in (("off", "--allow-image-urls"), ("default", "loopback, private or reserved")):
        with pytest.raises(anthropic.BadRequestError) as caught:
            reply(servers[server], {"type": "url", "url": f"{images}/red.png"})
        assert caught.value.body["type"] == "error" and words in caught.value.body["error"]["message"]


@pytest.mark.slow
def test_the_serve_flag_turns_on_fetching_under_the_default_policy(images):
    import openai

    from tests.models import QWEN_TOKENIZER, build_vision, require
    from tests.processes import start_server, stop_server

    model = build_vision("gguf", require(QWEN_TOKENIZER / "tokenizer.json").parent)
    for flags, words in (((), "--allow-image-urls"), (("--allow-image-urls",), "loopback, private or reserved")):
        proc, url = start_server(str(model), "--ctx", "2048", *flags)
        try:
            with pytest.raises(openai.BadRequestError) as caught:
                ask(url, f"{images}/red.png", model.stem)
            assert words in caught.value.body["message"]
        finally:
            stop_server(proc)
