"""Title, description and links of an HTML document, with the standard library's parser."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

from django.utils.translation import gettext as _

MAX_LINKS = 1000
MAX_TITLE_LENGTH = 500
MAX_DESCRIPTION_LENGTH = 5000
LINK_SCHEMES = frozenset({"http", "https"})

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_SPACES = re.compile(r"\s+")


class UnparsableHTML(ValueError):
    """The standard library's parser gave up on the document."""


@dataclass
class PageSummary:
    title: str = ""
    description: str = ""
    links: list[str] = field(default_factory=list)


def decode_html(body: bytes, charset: str | None) -> str:
    """Text of an HTML body: the header's charset, else a <meta charset>, else UTF-8."""
    for candidate in (charset, _sniff_charset(body), "utf-8"):
        if not candidate:
            continue
        try:
            codec = codecs.lookup(candidate)
        except LookupError:
            continue
        return body.decode(codec.name, errors="replace")
    return body.decode("utf-8", errors="replace")  # pragma: no cover - utf-8 always exists


def _sniff_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:4096])
    return match.group(1).decode("ascii") if match else None


def clean_text(value: str, limit: int) -> str:
    """Whitespace collapsed, NUL removed (PostgreSQL refuses it in text), cut to the limit."""
    return _SPACES.sub(" ", value.replace("\x00", "")).strip()[:limit]


def absolute_link(base: str, href: str) -> str | None:
    """`href` made absolute against `base`; None for links that lead to no page."""
    href = href.replace("\x00", "").strip()
    if not href or href.startswith("#"):
        return None
    try:
        parts = urlsplit(urljoin(base, href))
    except ValueError:
        return None
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.netloc:
        return None
    return urlunsplit(parts._replace(fragment=""))


class _SummaryParser(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.summary = PageSummary()
        self._seen: set[str] = set()
        self._in_title = False
        self._title_done = False
        self._title_parts: list[str] = []
        self._base_set = False
        self._og_description = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "title" and not self._title_done:
            self._in_title = True
        elif tag == "base" and not self._base_set and values.get("href"):
            # Only the first <base href> counts, and it changes how later links resolve.
            self._base_set = True
            self.base_url = urljoin(self.base_url, values["href"].strip())
        elif tag == "meta":
            self._meta(values)
        elif tag == "a" and values.get("href"):
            self._link(values["href"])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "title":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._title_done = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)

    def _meta(self, values: dict[str, str]) -> None:
        name = values.get("name", "").strip().lower()
        prop = values.get("property", "").strip().lower()
        if name == "description" and not self.summary.description:
            self.summary.description = clean_text(values.get("content", ""), MAX_DESCRIPTION_LENGTH)
        elif prop == "og:description" and not self._og_description:
            self._og_description = clean_text(values.get("content", ""), MAX_DESCRIPTION_LENGTH)

    def _link(self, href: str) -> None:
        link = absolute_link(self.base_url, href)
        if link is None or link in self._seen:
            return
        if len(self.summary.links) >= MAX_LINKS:
            return
        self._seen.add(link)
        self.summary.links.append(link)

    def result(self) -> PageSummary:
        self.summary.title = clean_text("".join(self._title_parts), MAX_TITLE_LENGTH)
        if not self.summary.description:
            self.summary.description = self._og_description
        return self.summary


def summarize(html: str, base_url: str) -> PageSummary:
    """Title, meta description (og:description as a fallback) and unique absolute links.

    Links keep the document's order, lose their fragment, and only http(s) ones are kept:
    mailto:, javascript: and in-page anchors lead to no other page.
    """
    parser = _SummaryParser(base_url)
    try:
        parser.feed(html)
        parser.close()
    except Exception as exc:
        # html.parser is lenient, but a few constructs (`<![bogus[`) still make it raise,
        # AssertionError among others.
        raise UnparsableHTML(
            _("The HTML could not be parsed: %(reason)s") % {"reason": exc}
        ) from exc
    return parser.result()
