"""The address guard: what the fetcher refuses, and that it connects where it checked."""

from __future__ import annotations

import socket

import httpx
import pytest

from pages import client
from pages.tests.server import PageServer

POLICY = client.FetchPolicy(
    connect_timeout=2,
    read_timeout=2,
    total_timeout=10,
    max_bytes=65536,
    max_redirects=5,
    allow_private_addresses=False,
)

PUBLIC_IP = "93.184.216.34"


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "100.64.0.1",  # carrier-grade NAT
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2002:a00:1::1",  # 6to4 around 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
        "2001::1",  # Teredo
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert not client.is_public_address(address.split("%")[0] if "%" in address else address)
    with pytest.raises(client.BlockedAddress, match="internal network"):
        client.check_address(address, allow_private=False)


@pytest.mark.parametrize(
    "address", [PUBLIC_IP, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert client.is_public_address(address)
    client.check_address(address, allow_private=False)


def test_the_setting_lets_internal_addresses_through() -> None:
    client.check_address("127.0.0.1", allow_private=True)
    client.check_address("::1", allow_private=True)


def resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return table[host]

    resolve.calls = calls
    return resolve


def test_a_name_resolving_to_loopback_is_refused() -> None:
    resolve = resolver({"internal.example": ["127.0.0.1"]})
    url = httpx.URL("http://internal.example/")
    with pytest.raises(client.BlockedAddress, match=r"internal\.example \(127\.0\.0\.1\)"):
        client.pick_address(url, allow_private=False, resolve=resolve)


def test_a_name_resolving_to_public_and_private_addresses_is_refused() -> None:
    resolve = resolver({"mixed.example": [PUBLIC_IP, "10.1.2.3"]})
    with pytest.raises(client.BlockedAddress, match=r"10\.1\.2\.3"):
        client.pick_address(
            httpx.URL("http://mixed.example/"), allow_private=False, resolve=resolve
        )


def test_localhost_is_refused_with_the_real_resolver(page_server: PageServer) -> None:
    url = page_server.url("normal").replace("127.0.0.1", "localhost")
    with pytest.raises(client.BlockedAddress):
        client.fetch(url, policy=POLICY)
    assert page_server.hits(httpx.URL(url).raw_path.decode()) == 0


def test_a_literal_loopback_address_is_refused_before_any_request(page_server: PageServer) -> None:
    url = page_server.url("normal")
    with pytest.raises(client.BlockedAddress):
        client.fetch(url, policy=POLICY)
    assert page_server.hits(url) == 0


def html_response(html: str) -> httpx.Response:
    # A streamed body, as the network gives it: the client reads it with iter_raw().
    return httpx.Response(
        200, headers={"Content-Type": "text/html"}, stream=httpx.ByteStream(html.encode())
    )


class Recorder:
    """A transport standing in for the network: it records what would have been sent."""

    def __init__(self, answers: dict[str, httpx.Response]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[request.headers["host"] + request.url.raw_path.decode()]


def test_the_connection_goes_to_the_checked_address_with_the_original_host() -> None:
    # A rebinding DNS server answers a public address to the check and loopback afterwards:
    # the name is resolved once per hop and the request is sent to the address checked.
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])
    recorder = Recorder({"rebind.example:8443/x": html_response("<title>t</title>")})

    page = client.fetch(
        "https://rebind.example:8443/x",
        policy=POLICY,
        resolve=lambda host, port: next(answers),
        transport=httpx.MockTransport(recorder),
    )

    [request] = recorder.requests
    assert request.url.host == PUBLIC_IP
    assert request.url.port == 8443
    assert request.headers["host"] == "rebind.example:8443"
    assert request.extensions["sni_hostname"] == "rebind.example"
    assert page.final_url == "https://rebind.example:8443/x"


@pytest.mark.parametrize(
    ("location", "table"),
    [
        ("http://10.0.0.5/admin", {}),
        ("http://[::ffff:127.0.0.1]/", {}),
        ("http://169.254.169.254/latest/meta-data/", {}),
        ("http://internal.example/", {"internal.example": ["192.168.0.10"]}),
    ],
)
def test_a_redirect_to_an_internal_address_is_refused(
    location: str, table: dict[str, list[str]]
) -> None:
    recorder = Recorder({"public.example/": httpx.Response(302, headers={"Location": location})})

    def resolve(host: str, port: int) -> list[str]:
        return {"public.example": [PUBLIC_IP], **table}.get(host) or [host]

    with pytest.raises(client.BlockedAddress):
        client.fetch(
            "http://public.example/",
            policy=POLICY,
            resolve=resolve,
            transport=httpx.MockTransport(recorder),
        )
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "location", ["ftp://public.example/file", "file:///etc/passwd", "gopher://public.example/"]
)
def test_a_redirect_to_another_scheme_is_refused(location: str) -> None:
    recorder = Recorder({"public.example/": httpx.Response(301, headers={"Location": location})})
    with pytest.raises(client.InvalidURL, match="Only http and https"):
        client.fetch(
            "http://public.example/",
            policy=POLICY,
            resolve=lambda host, port: [PUBLIC_IP],
            transport=httpx.MockTransport(recorder),
        )
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "Only http and https"),
        ("file:///etc/passwd", "Only http and https"),
        ("javascript:alert(1)", "Only http and https"),
        ("http:///nohost", "no host"),
        ("http://user:secret@example.com/", "user name or password"),
        ("http://example.com/" + "a" * 2000, "longer than"),
        ("http://93.184.216.34:99999/", r"99999 is not a port number \(1 to 65535\)"),
        ("http://example.com:0/", r"0 is not a port number"),
    ],
)
def test_urls_the_client_refuses(url: str, reason: str) -> None:
    with pytest.raises(client.InvalidURL, match=reason):
        client.validate_url(url)


@pytest.mark.parametrize(
    ("language", "errno", "reason"),
    [
        ("en", socket.EAI_NONAME, "no such name is known"),
        ("zh-hans", socket.EAI_NONAME, "没有这个名字"),
        ("zh-hans", socket.EAI_AGAIN, "域名服务器没有及时应答"),
    ],
)
def test_why_a_name_did_not_resolve_is_said_in_the_readers_language(
    monkeypatch, language: str, errno: int, reason: str
) -> None:
    from django.utils import translation

    def getaddrinfo(*args, **kwargs):
        # What glibc says, in English whatever the reader's language.
        raise socket.gaierror(errno, "Name or service not known")

    monkeypatch.setattr(client.socket, "getaddrinfo", getaddrinfo)
    with translation.override(language), pytest.raises(client.ResolutionFailed) as failed:
        client.resolve_host("example.com", 80)
    assert failed.value.message.endswith(reason)
    assert "Name or service not known" not in failed.value.message
