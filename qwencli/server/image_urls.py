"""Remote image URLs, fetched only when `qwen serve --allow-image-urls` says so.

A URL in a request makes the server a client of whatever it names, so the fetch is fenced: http
and https only (no file://, no ftp://), no proxy from the environment, every hop's host resolved
once and each address it resolves to checked against `allow_address` (public addresses only by
default: no loopback, private, link-local — the cloud metadata service at 169.254.169.254 — or
reserved ranges), redirects followed by hand (each one a new hop, at most `max_redirects`), a
size cap on the body and one deadline for the whole fetch. `allow_address` is a parameter so that
a test's loopback server can be allowed explicitly while the default refuses it.

No DNS-rebinding window: the connection goes to the address that was checked, not to the host
name (which a second lookup could answer with 127.0.0.1). The request's URL names that address,
while its Host header and, for https, the TLS server name (SNI, and the name the certificate is
verified against) stay the original host's — what a client that resolved the name itself sends.
The connected peer is checked once more before anything is read, in case anything in between
connected elsewhere. `resolve` is a parameter for the tests' resolver that changes its answer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
REDIRECTS = (301, 302, 303, 307, 308)


class ImageUrlRefused(Exception):
    """A remote image that was not fetched: the message says why (for a 400)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def public_only(address: Address) -> bool:
    """The default policy: globally routable unicast addresses only."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_global and not address.is_multicast


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, as the system resolver answers (the default `resolve`)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class _Hop:
    url: str  # as the request or the redirect named it: what a relative Location is joined to
    host: str
    port: int
    https: bool
    address: Address  # the checked address this hop connects to

    def pinned_url(self) -> str:
        """`url` with its host replaced by the checked address (the port kept explicit)."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))

    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == (443 if self.https else 80) else f"{name}:{self.port}"


@dataclass(frozen=True)
class ImageUrlPolicy:
    #: The most bytes one image may have (Content-Length, or counted while reading).
    max_bytes: int = 20 * 2**20
    #: Seconds for the whole fetch, redirects included.
    timeout: float = 10.0
    max_redirects: int = 3
    allow_address: Callable[[Address], bool] = public_only
    #: Host and port → the addresses to check and connect to (tests change the answer between calls).
    resolve: Callable[[str, int], list[str]] = system_resolve
    #: What https certificates are verified against (httpx's `verify`): the system's CAs by default.
    verify: ssl.SSLContext | bool = True

    def fetch(self, url: str) -> bytes:
        """The bytes `url` names, or `ImageUrlRefused`. Blocking: call it off the event loop."""
        import httpx

        deadline = time.monotonic() + self.timeout
        with httpx.Client(follow_redirects=False, trust_env=False, timeout=self.timeout, verify=self.verify) as client:
            for _hop in range(self.max_redirects + 1):
                hop = self._hop(url)
                left = max(0.1, deadline - time.monotonic())
                headers = {"Host": hop.host_header(), "Accept": "image/*"}
                # The certificate is checked against the host's name, not the address connected to.
                extensions = {"sni_hostname": hop.host} if hop.https else {}
                try:
                    request = client.build_request(
                        "GET", hop.pinned_url(), headers=headers, timeout=left, extensions=extensions
                    )
                    with contextlib.closing(client.send(request, stream=True)) as response:
                        self._check_peer(response, hop)
                        if response.status_code in REDIRECTS:
                            location = response.headers.get("location")
                            if not location:
                                raise ImageUrlRefused(f"{url} redirected without a Location")
                            url = urljoin(url, location)
                            continue
                        if response.status_code != 200:
                            raise ImageUrlRefused(f"{url} answered HTTP {response.status_code}")
                        return self._body(response, url, deadline)
                except httpx.TimeoutException:
                    raise ImageUrlRefused(f"{url} did not answer within {self.timeout:g} s") from None
                except httpx.HTTPError as exc:
                    raise ImageUrlRefused(f"{url} could not be fetched: {exc}") from None
        raise ImageUrlRefused(f"{url}: more than {self.max_redirects} redirects")

    @staticmethod
    def _check_url(url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ImageUrlRefused(f"{url[:200]!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise ImageUrlRefused(f"only http and https image URLs are fetched, not {parts.scheme or 'none'}://")
        if not parts.hostname:
            raise ImageUrlRefused(f"{url[:200]!r} names no host")
        return parts.hostname, port or (443 if parts.scheme == "https" else 80)

    def _hop(self, url: str) -> _Hop:
        """`url` checked, its host resolved once and every address it resolves to checked (one
        refused address refuses the hop); the hop connects to the first."""
        host, port = self._check_url(url)
        try:
            texts = self.resolve(host, port)
        except (OSError, UnicodeError):
            raise ImageUrlRefused(f"{host} does not resolve") from None
        if not texts:
            raise ImageUrlRefused(f"{host} does not resolve")
        addresses = [self._check_address(host, text) for text in texts]
        return _Hop(url, host, port, urlsplit(url).scheme == "https", addresses[0])

    def _check_address(self, host: str, text: str) -> Address:
        address = ipaddress.ip_address(text.split("%")[0])
        if not self.allow_address(address):
            raise ImageUrlRefused(
                f"{host} is {address}, a loopback, private or reserved address: image URLs are fetched "
                "from public addresses only"
            )
        return address

    def _check_peer(self, response, hop: _Hop) -> None:
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if not peer:
            raise ImageUrlRefused(f"{hop.host}: the connected address is unknown, so it cannot be checked")
        if self._check_address(hop.host, str(peer[0])) != hop.address:
            raise ImageUrlRefused(f"{hop.host}: connected to {peer[0]}, not the checked {hop.address}")

    def _body(self, response, url: str, deadline: float) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageUrlRefused(f"{url} is {int(declared)} bytes; remote images are limited to {self.max_bytes}")
        body = bytearray()
        for block in response.iter_bytes():
            body += block
            if len(body) > self.max_bytes:
                raise ImageUrlRefused(f"{url} is over {self.max_bytes} bytes, the limit for remote images")
            if time.monotonic() > deadline:
                raise ImageUrlRefused(f"{url} did not arrive within {self.timeout:g} s")
        return bytes(body)
