"""An HTTP client for third-party pages that cannot be turned against the internal network.

What it guarantees, for every request including each redirect hop:

- only http and https URLs, without user names or passwords in them;
- the host is resolved once, every address it resolves to is checked (private, loopback,
  link-local, multicast, reserved and unspecified addresses are refused, IPv4 and IPv6, with
  IPv4 embedded in IPv6 judged as IPv4), and the connection goes to the address that was
  checked, with the original Host header and TLS server name, so a DNS answer that changes
  between the check and the connection (rebinding) reaches nothing new;
- connect and read timeouts and an overall deadline;
- redirects followed by hand, at most PAGES_MAX_REDIRECTS of them, loops reported as loops;
- the body read as a stream and abandoned past PAGES_MAX_BYTES, counted after decompression,
  so a small gzip bomb is refused like a large body.

Errors are FetchError subclasses; `retryable` tells the task which ones are worth another try
(timeouts, dropped connections, 5xx) and which are not (4xx, refused addresses, bad URLs).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.utils.translation import gettext as _

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2000
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
USER_AGENT = "myproject-pages/1.0"

# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], list[str]]


class FetchError(Exception):
    """A fetch that did not produce a page; the message says why, for the person who asked."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        final_url: str = "",
        content_type: str = "",
        elapsed_ms: int | None = None,
    ) -> None:
        # Only the message goes into args: Celery rebuilds stored exceptions as cls(*args).
        super().__init__(message)
        self.status_code = status_code
        self.final_url = final_url
        self.content_type = content_type
        self.elapsed_ms = elapsed_ms

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidURL(FetchError):
    """Not an http(s) URL this client will request."""


class BlockedAddress(FetchError):
    """The host is, or resolves to, an address the fetcher may not reach."""


class ResolutionFailed(FetchError):
    """The host name does not resolve."""


class TemporaryResolutionFailure(ResolutionFailed):
    retryable = True


class FetchTimeout(FetchError):
    retryable = True


class ConnectionFailed(FetchError):
    retryable = True


class ProtocolFailure(FetchError):
    """The server's answer is not valid HTTP, or its encoding cannot be decoded."""


class ServerError(FetchError):
    """A 5xx answer: the server may recover, so it is retried."""

    retryable = True


class ClientError(FetchError):
    """A 4xx answer: asking again would get the same answer."""


class UnexpectedStatus(FetchError):
    """A status that is neither a page, an error, nor a redirect that can be followed."""


class TooManyRedirects(FetchError):
    pass


class RedirectLoop(TooManyRedirects):
    pass


class BodyTooLarge(FetchError):
    pass


@dataclass(frozen=True)
class FetchPolicy:
    """The limits one fetch runs under; read from settings at fetch time."""

    connect_timeout: float
    """Seconds to wait for a TCP (and TLS) connection."""
    read_timeout: float
    """Seconds to wait for each piece of the answer."""
    total_timeout: float
    """Seconds the whole fetch, all redirects included, may take."""
    max_bytes: int
    """Largest body kept, after decompression."""
    max_redirects: int
    """Redirects followed before giving up."""
    allow_private_addresses: bool
    """Let requests reach private, loopback and link-local addresses (tests, intranets)."""

    @classmethod
    def from_settings(cls) -> FetchPolicy:
        return cls(
            connect_timeout=settings.PAGES_CONNECT_TIMEOUT,
            read_timeout=settings.PAGES_READ_TIMEOUT,
            total_timeout=settings.PAGES_TOTAL_TIMEOUT,
            max_bytes=settings.PAGES_MAX_BYTES,
            max_redirects=settings.PAGES_MAX_REDIRECTS,
            allow_private_addresses=settings.PAGES_ALLOW_PRIVATE_ADDRESSES,
        )


@dataclass(frozen=True)
class FetchedPage:
    url: str
    """The URL that was asked for."""
    final_url: str
    """The URL that answered, after redirects."""
    status_code: int
    content_type: str
    """The media type alone, lower case, without parameters."""
    charset: str | None
    """The charset parameter of Content-Type, when the server sent one."""
    elapsed_ms: int
    """From the first request to the last byte of the body, redirects included."""
    body: bytes
    redirects: tuple[str, ...] = field(default=())

    @property
    def is_html(self) -> bool:
        if self.content_type:
            return self.content_type in HTML_TYPES
        # No Content-Type at all: look at the body, as browsers do.
        start = self.body[:512].lstrip().lower()
        return start.startswith((b"<!doctype html", b"<html"))


# Addresses ------------------------------------------------------------------------------


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is a translation of one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True when the address is one the open internet routes to a third party."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # ::ffff:127.0.0.1 reaches loopback: judge the IPv4 address it carries.
            return is_public_address(embedded)
        if ip.teredo is not None:
            return False
    # is_global alone lets multicast through on Python 3.11, so each flag is checked.
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_address(address: str, *, allow_private: bool, host: str = "") -> None:
    """Raise BlockedAddress unless the fetcher may connect to this address."""
    if allow_private or is_public_address(address):
        return
    shown = f"{host} ({address})" if host and host != address else address
    raise BlockedAddress(
        _(
            "%(address)s is a private, loopback, link-local or reserved address: pages on "
            "the internal network are not fetched."
        )
        % {"address": shown}
    )


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        message = _("The host %(host)s could not be resolved: %(reason)s") % {
            "host": host,
            "reason": _resolution_reason(exc),
        }
        if exc.errno == socket.EAI_AGAIN:
            raise TemporaryResolutionFailure(message) from exc
        raise ResolutionFailed(message) from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def _resolution_reason(exc: socket.gaierror) -> str:
    """The resolver's reason in the reader's language (the C library's is English)."""
    reasons = {
        socket.EAI_NONAME: _("no such name is known"),
        socket.EAI_AGAIN: _("the name servers did not answer in time"),
    }
    no_data = getattr(socket, "EAI_NODATA", None)  # glibc's, not every platform's
    if no_data is not None:
        reasons[no_data] = _("the name has no address")
    return reasons.get(exc.errno) or str(exc.strerror or exc)


def pick_address(url: httpx.URL, *, allow_private: bool, resolve: Resolver = resolve_host) -> str:
    """Resolve the URL's host and return the address to connect to, or raise.

    Every address is checked, not only the one used: a name that resolves to a public and a
    private address is refused, since a later connection could be sent to either.
    """
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise ResolutionFailed(_("The host %(host)s has no address.") % {"host": host})
    for address in addresses:
        check_address(address, allow_private=allow_private, host=host)
    return addresses[0]


# URLs -----------------------------------------------------------------------------------


def validate_url(url: str | httpx.URL) -> httpx.URL:
    """Parse the URL and refuse what this client does not request; the fragment is dropped."""
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise InvalidURL(
            _("The URL is longer than %(limit)d characters.") % {"limit": MAX_URL_LENGTH}
        )
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidURL(_("This is not a valid URL: %(reason)s") % {"reason": exc}) from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise InvalidURL(
            _("Only http and https URLs are fetched, not %(scheme)s.")
            % {"scheme": parsed.scheme or _("(no scheme)")}
        )
    if not parsed.raw_host:
        raise InvalidURL(_("The URL has no host."))
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise InvalidURL(_("%(port)s is not a port number (1 to 65535).") % {"port": parsed.port})
    if parsed.userinfo:
        raise InvalidURL(_("URLs with a user name or password are not fetched."))
    return parsed.copy_with(fragment=None)


def literal_address(url: httpx.URL) -> str | None:
    """The host as an address when the URL names one directly (http://10.0.0.1/)."""
    try:
        return str(ipaddress.ip_address(url.raw_host.decode("ascii")))
    except ValueError:
        return None


# Fetching ---------------------------------------------------------------------------------


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def check(self, url: str) -> None:
        if time.perf_counter() - self.started > self.seconds:
            raise FetchTimeout(
                _("Fetching %(url)s took longer than %(seconds)s s in all.")
                % {"url": url, "seconds": self.seconds},
                final_url=url,
                elapsed_ms=self.elapsed_ms(),
            )


def _pinned_request(client: httpx.Client, url: httpx.URL, address: str) -> httpx.Request:
    """A request that connects to `address` but otherwise looks like one to `url`."""
    extensions = {}
    if url.scheme == "https" and literal_address(url) is None:
        # httpcore uses this as the TLS server name and checks the certificate against it.
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return client.build_request(
        "GET",
        url.copy_with(host=address),
        headers={"Host": url.netloc.decode("ascii")},
        extensions=extensions,
    )


def _media_type(response: httpx.Response) -> tuple[str, str | None]:
    header = response.headers.get("Content-Type", "")
    media_type, _sep, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _eq, value = param.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media_type.strip().lower()[:255], charset


def _decoder(response: httpx.Response, url: str) -> zlib._Decompress | None:
    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        # 32 + MAX_WBITS accepts both gzip and zlib headers.
        return zlib.decompressobj(32 + zlib.MAX_WBITS)
    raise ProtocolFailure(
        _("The server sent the body in an encoding this fetcher does not decode: %(coding)s.")
        % {"coding": coding},
        status_code=response.status_code,
        final_url=url,
    )


def _chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    """The decoded body, in pieces small enough that a decompression bomb cannot blow up."""
    decoder = _decoder(response, url)
    for raw in response.iter_raw():
        if decoder is None:
            yield raw
            continue
        data = raw
        while data:
            try:
                piece = decoder.decompress(data, 64 * 1024)
            except zlib.error as exc:
                raise ProtocolFailure(
                    _("The compressed body could not be decoded: %(reason)s") % {"reason": exc},
                    status_code=response.status_code,
                    final_url=url,
                ) from exc
            yield piece
            data = decoder.unconsumed_tail
    if decoder is not None:
        yield decoder.flush()


def _read_body(
    response: httpx.Response, url: str, policy: FetchPolicy, deadline: _Deadline
) -> bytes:
    content_type, _charset = _media_type(response)

    def too_large() -> BodyTooLarge:
        return BodyTooLarge(
            _("The page is larger than the limit of %(limit)d bytes.")
            % {"limit": policy.max_bytes},
            status_code=response.status_code,
            final_url=url,
            content_type=content_type,
            elapsed_ms=deadline.elapsed_ms(),
        )

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise too_large()
    body = bytearray()
    for chunk in _chunks(response, url):
        body += chunk
        if len(body) > policy.max_bytes:
            raise too_large()
        deadline.check(url)
    return bytes(body)


def fetch(
    url: str,
    *,
    policy: FetchPolicy | None = None,
    resolve: Resolver = resolve_host,
    transport: httpx.BaseTransport | None = None,
    verify: ssl.SSLContext | bool = True,
) -> FetchedPage:
    """GET the page at `url` under the policy's limits; raise a FetchError when that fails.

    `resolve`, `transport` and `verify` are for tests: a resolver standing in for DNS, a
    transport standing in for the network, the certificates trusted for https.
    """
    policy = policy or FetchPolicy.from_settings()
    deadline = _Deadline(policy.total_timeout)
    current = validate_url(url)
    seen = {str(current)}
    redirects: list[str] = []
    timeout = httpx.Timeout(
        connect=policy.connect_timeout,
        read=policy.read_timeout,
        write=policy.read_timeout,
        pool=policy.connect_timeout,
    )
    # trust_env=False: a proxy from the environment would make the connection somewhere other
    # than the address that was checked.
    with httpx.Client(
        transport=transport,
        verify=verify,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
            "Accept-Encoding": "gzip, deflate",
        },
    ) as client:
        while True:
            shown = str(current)
            address = pick_address(
                current, allow_private=policy.allow_private_addresses, resolve=resolve
            )
            request = _pinned_request(client, current, address)
            with _translate_transport_errors(shown, deadline):
                response = client.send(request, stream=True)
                try:
                    target = _redirect_target(response, current, shown, deadline)
                    if target is None:
                        _raise_for_status(response, shown, deadline)
                        body = _read_body(response, shown, policy, deadline)
                finally:
                    response.close()
            if target is None:
                content_type, charset = _media_type(response)
                return FetchedPage(
                    url=str(url),
                    final_url=shown,
                    status_code=response.status_code,
                    content_type=content_type,
                    charset=charset,
                    elapsed_ms=deadline.elapsed_ms(),
                    body=body,
                    redirects=tuple(redirects),
                )
            if str(target) in seen:
                raise RedirectLoop(
                    _("Redirect loop: %(url)s redirects back to %(target)s.")
                    % {"url": shown, "target": target},
                    status_code=response.status_code,
                    final_url=shown,
                    elapsed_ms=deadline.elapsed_ms(),
                )
            if len(redirects) >= policy.max_redirects:
                raise TooManyRedirects(
                    _("More than %(limit)d redirects, the last one from %(url)s.")
                    % {"limit": policy.max_redirects, "url": shown},
                    status_code=response.status_code,
                    final_url=shown,
                    elapsed_ms=deadline.elapsed_ms(),
                )
            seen.add(str(target))
            redirects.append(str(target))
            current = target
            deadline.check(shown)


@contextlib.contextmanager
def _translate_transport_errors(url: str, deadline: _Deadline) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        kind = _("connecting") if isinstance(exc, httpx.ConnectTimeout) else _("waiting for")
        raise FetchTimeout(
            _("Timed out %(kind)s %(url)s.") % {"kind": kind, "url": url},
            final_url=url,
            elapsed_ms=deadline.elapsed_ms(),
        ) from exc
    except httpx.NetworkError as exc:
        raise ConnectionFailed(
            _("The connection to %(url)s failed: %(reason)s") % {"url": url, "reason": exc},
            final_url=url,
            elapsed_ms=deadline.elapsed_ms(),
        ) from exc
    except (httpx.ProtocolError, httpx.DecodingError) as exc:
        raise ProtocolFailure(
            _("The answer from %(url)s is not valid HTTP: %(reason)s")
            % {"url": url, "reason": exc},
            final_url=url,
            elapsed_ms=deadline.elapsed_ms(),
        ) from exc


def _redirect_target(
    response: httpx.Response, current: httpx.URL, shown: str, deadline: _Deadline
) -> httpx.URL | None:
    if not response.is_redirect:
        return None
    location = response.headers["Location"]
    try:
        joined = current.join(location)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidURL(
            _("%(url)s redirects to an invalid URL: %(reason)s") % {"url": shown, "reason": exc},
            status_code=response.status_code,
            final_url=shown,
            elapsed_ms=deadline.elapsed_ms(),
        ) from exc
    try:
        return validate_url(joined)
    except InvalidURL as exc:
        raise InvalidURL(
            _("%(url)s redirects to %(target)s, which is refused: %(reason)s")
            % {"url": shown, "target": location, "reason": exc.message},
            status_code=response.status_code,
            final_url=shown,
            elapsed_ms=deadline.elapsed_ms(),
        ) from exc


def _raise_for_status(response: httpx.Response, url: str, deadline: _Deadline) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    details = {
        "status_code": code,
        "final_url": url,
        "content_type": _media_type(response)[0],
        "elapsed_ms": deadline.elapsed_ms(),
    }
    reason = response.reason_phrase or ""
    values = {"code": code, "reason": reason, "url": url}
    if code >= 500:
        raise ServerError(
            _("The server answered %(code)d %(reason)s for %(url)s.") % values, **details
        )
    if code >= 400:
        raise ClientError(
            _("The server answered %(code)d %(reason)s for %(url)s; this is not retried.") % values,
            **details,
        )
    raise UnexpectedStatus(
        _("The server answered %(code)d %(reason)s for %(url)s, which is not a page.") % values,
        **details,
    )
