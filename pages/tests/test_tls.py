"""https with the connection pinned to the checked address: the certificate is still checked
against the host name, which is also the server name (SNI) sent in the TLS handshake.

tls/cert.pem is a self-signed certificate for pages.test, valid until 2126, made with
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=pages.test
        -addext subjectAltName=DNS:pages.test -addext basicConstraints=critical,CA:TRUE
        -addext keyUsage=critical,digitalSignature,keyCertSign -days 36500
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from pages import client
from pages.tests.server import PageServer

TLS = Path(__file__).parent / "tls"
POLICY = client.FetchPolicy(
    connect_timeout=2,
    read_timeout=2,
    total_timeout=10,
    max_bytes=65536,
    max_redirects=5,
    allow_private_addresses=True,
)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[PageServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server = PageServer(tls=context).start()
    server.server_names = server_names
    yield server
    server.stop()


@pytest.fixture
def trusted() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=TLS / "cert.pem")


def everything_is_local(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def test_the_certificate_is_checked_against_the_host_name(
    tls_server: PageServer, trusted: ssl.SSLContext
) -> None:
    port = tls_server.server_address[1]
    page = client.fetch(
        f"https://pages.test:{port}/normal/tls",
        policy=POLICY,
        resolve=everything_is_local,
        verify=trusted,
    )
    assert page.status_code == 200
    assert page.final_url == f"https://pages.test:{port}/normal/tls"
    assert tls_server.server_names[-1] == "pages.test"
    assert tls_server.host_headers[-1] == f"pages.test:{port}"


def test_a_certificate_for_another_name_is_refused(
    tls_server: PageServer, trusted: ssl.SSLContext
) -> None:
    port = tls_server.server_address[1]
    with pytest.raises(client.ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):
        client.fetch(
            f"https://elsewhere.test:{port}/normal/mismatch",
            policy=POLICY,
            resolve=everything_is_local,
            verify=trusted,
        )
    assert tls_server.server_names[-1] == "elsewhere.test"
    assert tls_server.hits("/normal/mismatch") == 0
