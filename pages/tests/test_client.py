"""The client against a real local HTTP server (private addresses allowed for it)."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from pages import client
from pages.parsing import decode_html
from pages.tests.server import PageServer

POLICY = client.FetchPolicy(
    connect_timeout=2,
    read_timeout=1,
    total_timeout=30,
    max_bytes=64 * 1024,
    max_redirects=5,
    allow_private_addresses=True,
)


def test_a_normal_page(page_server: PageServer) -> None:
    url = page_server.url("normal")
    page = client.fetch(url + "#fragment", policy=POLICY)
    assert page.status_code == 200
    assert page.final_url == url
    assert page.content_type == "text/html"
    assert page.charset == "utf-8"
    assert page.is_html
    assert b"<title>" in page.body
    assert page.elapsed_ms >= 0
    assert page.redirects == ()
    assert page_server.hits(url) == 1


def test_a_slow_answer_times_out_and_is_retryable(page_server: PageServer) -> None:
    url = page_server.url("slow")
    with pytest.raises(client.FetchTimeout, match="Timed out") as caught:
        client.fetch(url, policy=POLICY)
    assert caught.value.retryable
    # The server is slow only the first time.
    assert client.fetch(url, policy=POLICY).status_code == 200
    assert page_server.hits(url) == 2


def test_a_500_is_retryable(page_server: PageServer) -> None:
    with pytest.raises(client.ServerError, match="500 Internal Server Error") as caught:
        client.fetch(page_server.url("error"), policy=POLICY)
    assert caught.value.retryable
    assert caught.value.status_code == 500


def test_a_404_is_not_retryable(page_server: PageServer) -> None:
    with pytest.raises(client.ClientError, match="404 Not Found") as caught:
        client.fetch(page_server.url("missing"), policy=POLICY)
    assert not caught.value.retryable
    assert caught.value.status_code == 404


def test_a_redirect_loop_is_reported_as_a_loop(page_server: PageServer) -> None:
    url = page_server.url("loop")
    with pytest.raises(client.RedirectLoop, match="Redirect loop") as caught:
        client.fetch(url, policy=POLICY)
    assert not caught.value.retryable
    assert page_server.hits(url) == 1
    assert page_server.hits(url + "/again") == 1


def test_relative_redirects_are_followed_up_to_the_limit(page_server: PageServer) -> None:
    base = f"{page_server.base_url}/hops/{page_server.url('x').rsplit('/', 1)[1]}"
    page = client.fetch(f"{base}/5", policy=POLICY)
    assert page.redirects == tuple(f"{base}/{n}" for n in (4, 3, 2, 1, 0))
    assert page.final_url == f"{base}/0"
    with pytest.raises(client.TooManyRedirects, match="More than 5 redirects"):
        client.fetch(f"{base}/6", policy=POLICY)
    assert page_server.hits(f"{base}/0") == 1  # the sixth redirect was never followed


def test_no_redirects_at_all_when_the_limit_is_zero(page_server: PageServer) -> None:
    policy = dataclasses.replace(POLICY, max_redirects=0)
    base = f"{page_server.base_url}/hops/zero"
    with pytest.raises(client.TooManyRedirects):
        client.fetch(f"{base}/1", policy=policy)
    assert client.fetch(f"{base}/0", policy=policy).status_code == 200


def test_a_body_that_is_not_html(page_server: PageServer) -> None:
    page = client.fetch(page_server.url("json"), policy=POLICY)
    assert page.content_type == "application/json"
    assert not page.is_html


@pytest.mark.parametrize("kind", ["big", "declared-big", "gzip-bomb"])
def test_bodies_over_the_limit_are_refused(page_server: PageServer, kind: str) -> None:
    with pytest.raises(client.BodyTooLarge, match="larger than the limit of 65536 bytes") as e:
        client.fetch(page_server.url(kind), policy=POLICY)
    assert not e.value.retryable
    assert e.value.status_code == 200


def test_a_gzip_body_is_decoded(page_server: PageServer) -> None:
    page = client.fetch(page_server.url("gzip"), policy=POLICY)
    assert page.body.startswith(b"<!doctype html>")


def test_the_charset_of_the_header_decodes_the_body(page_server: PageServer) -> None:
    page = client.fetch(page_server.url("latin1"), policy=POLICY)
    assert page.charset == "iso-8859-1"
    assert "Café crème" in decode_html(page.body, page.charset)


def test_a_refused_connection_is_retryable(page_server: PageServer) -> None:
    # A port nobody listens on: bind one, close it, use its number.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(client.ConnectionFailed) as caught:
        client.fetch(f"http://127.0.0.1:{port}/", policy=POLICY)
    assert caught.value.retryable


def test_the_overall_deadline(page_server: PageServer) -> None:
    policy = dataclasses.replace(POLICY, total_timeout=0)
    with pytest.raises(client.FetchTimeout, match="in all"):
        client.fetch(page_server.url("normal"), policy=policy)
