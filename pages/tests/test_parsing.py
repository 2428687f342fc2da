from __future__ import annotations

import pytest

from pages.parsing import MAX_LINKS, UnparsableHTML, absolute_link, decode_html, summarize
from pages.tests.server import NORMAL_HTML


def test_title_description_and_absolute_links() -> None:
    summary = summarize(NORMAL_HTML, "http://127.0.0.1:8000/normal/key")
    assert summary.title == "A normal page"
    assert summary.description == "What a normal page is about."
    # Relative made absolute, fragment dropped, duplicates, anchors, mailto: and javascript: gone.
    assert summary.links == ["http://127.0.0.1:8000/normal/other", "https://example.org/x"]


def test_base_href_changes_how_links_resolve() -> None:
    html = '<base href="https://cdn.example/docs/"><a href="page">p</a><a href="/root">r</a>'
    assert summarize(html, "https://site.example/").links == [
        "https://cdn.example/docs/page",
        "https://cdn.example/root",
    ]


def test_og_description_is_the_fallback_and_entities_are_decoded() -> None:
    html = '<title>Fish &amp; chips</title><meta property="og:description" content="Crisp &lt;3">'
    summary = summarize(html, "https://site.example/")
    assert summary.title == "Fish & chips"
    assert summary.description == "Crisp <3"


def test_only_the_first_title_counts_and_nul_is_removed() -> None:
    html = "<title>One\x00 two</title><svg><title>icon</title></svg><a href='/a\x00b'>x</a>"
    summary = summarize(html, "https://site.example/")
    assert summary.title == "One two"
    assert summary.links == ["https://site.example/ab"]


def test_broken_html_still_gives_what_it_can() -> None:
    summary = summarize("<html><title>Unclosed <a href='/x'>x</a", "https://site.example/")
    assert summary.title.startswith("Unclosed")


def test_the_number_of_links_is_capped() -> None:
    html = "".join(f'<a href="/p{n}">{n}</a>' for n in range(MAX_LINKS + 50))
    links = summarize(html, "https://site.example/").links
    assert len(links) == MAX_LINKS
    assert links[-1] == f"https://site.example/p{MAX_LINKS - 1}"


def test_links_that_lead_to_no_page() -> None:
    assert absolute_link("https://site.example/", "#top") is None
    assert absolute_link("https://site.example/", "mailto:a@b.example") is None
    assert absolute_link("https://site.example/", "javascript:void(0)") is None
    assert absolute_link("https://site.example/", "   ") is None
    assert absolute_link("https://site.example/a/", "../b?q=1#x") == "https://site.example/b?q=1"


def test_decoding_follows_header_then_meta_then_utf8() -> None:
    latin = "<meta charset='iso-8859-1'><title>Café</title>".encode("latin-1")
    assert "Café" in decode_html(latin, None)
    assert "Café" in decode_html("Café".encode("cp1252"), "windows-1252")
    assert decode_html("Café".encode(), "no-such-charset") == "Café"
    assert decode_html(b"\xff\xfe broken", None).endswith("broken")


def test_html_the_parser_gives_up_on_is_reported() -> None:
    with pytest.raises(UnparsableHTML, match="The HTML could not be parsed: unknown status"):
        summarize("<title>Odd</title><![bogus[x]]>", "https://site.example/")
