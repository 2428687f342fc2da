"""A local HTTP server with one path for each kind of page the fetcher meets.

Paths take a key (`/slow/<key>`) so each test counts its own requests: `hits(path)`.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_SECONDS = 3.0
BIG_BODY_BYTES = 256 * 1024

NORMAL_HTML = """<!doctype html>
<html><head>
<meta charset="utf-8">
<title>  A normal
 page </title>
<meta name="description" content="What a normal page is about.">
</head><body>
<h1>Hello</h1>
<a href="/normal/other">relative</a>
<a href="https://example.org/x#section">absolute with a fragment</a>
<a href="#top">in-page anchor</a>
<a href="mailto:someone@example.org">mail</a>
<a href="javascript:alert(1)">script</a>
<a href="/normal/other">the same link again</a>
</body></html>
"""


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scheme = "https" if tls else "http"
        if tls:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self._lock = threading.Lock()
        self._hits: Counter[str] = Counter()
        self.host_headers: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def url(self, kind: str, key: str | None = None) -> str:
        """A fresh URL of the given kind, e.g. url("slow") -> http://127.0.0.1:PORT/slow/<key>."""
        return f"{self.base_url}/{kind}/{key or uuid.uuid4().hex}"

    def hits(self, url_or_path: str) -> int:
        path = url_or_path.removeprefix(self.base_url)
        with self._lock:
            return self._hits[path]

    def count(self, path: str, host: str = "") -> int:
        with self._lock:
            self.host_headers.append(host)
            self._hits[path] += 1
            return self._hits[path]

    def start(self) -> PageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        # The slow page answers after the client gave up: a broken pipe there is expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: PageServer

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        hit = self.server.count(self.path, self.headers.get("Host", ""))
        kind = self.path.split("/")[1] if self.path.count("/") >= 2 else ""
        handler = getattr(self, "page_" + kind.replace("-", "_"), None)
        if handler is None:
            self.send_body(404, b"no such page", "text/plain")
            return
        handler(hit)

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def page_normal(self, hit: int) -> None:
        self.send_body(200, NORMAL_HTML.encode(), "text/html; charset=utf-8")

    def page_slow(self, hit: int) -> None:
        if hit == 1:
            time.sleep(SLOW_SECONDS)
        self.page_normal(hit)

    def page_error(self, hit: int) -> None:
        self.send_body(500, b"<h1>Internal Server Error</h1>", "text/html")

    def page_missing(self, hit: int) -> None:
        self.send_body(404, b"<h1>Not Found</h1>", "text/html")

    def page_loop(self, hit: int) -> None:
        # /loop/<key> -> /loop/<key>/again -> /loop/<key> -> ...
        target = (
            self.path[: -len("/again")] if self.path.endswith("/again") else self.path + "/again"
        )
        self.redirect(target)

    def page_hops(self, hit: int) -> None:
        # /hops/<key>/<n>: n redirects (relative ones) before the normal page.
        _empty, _kind, _key, count = self.path.split("/")
        remaining = int(count)
        if remaining == 0:
            self.page_normal(hit)
        else:
            self.redirect(f"{remaining - 1}")

    def page_json(self, hit: int) -> None:
        self.send_body(200, b'{"title": "not an html page"}', "application/json")

    def page_big(self, hit: int) -> None:
        # No Content-Length: the body ends when the connection closes, so only the streaming
        # limit can stop it.
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"<p>" + b"x" * 1020 + b"</p>"
        for _ in range(BIG_BODY_BYTES // len(chunk) + 1):
            self.wfile.write(chunk)

    def page_declared_big(self, hit: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(BIG_BODY_BYTES))
        self.end_headers()
        self.wfile.write(b"<p>only the beginning</p>")

    def page_gzip(self, hit: int) -> None:
        body = gzip.compress(NORMAL_HTML.encode())
        self.send_body(200, body, "text/html; charset=utf-8", {"Content-Encoding": "gzip"})

    def page_gzip_bomb(self, hit: int) -> None:
        body = gzip.compress(b"\0" * (BIG_BODY_BYTES * 40))
        self.send_body(200, body, "text/html", {"Content-Encoding": "gzip"})

    def page_unparsable(self, hit: int) -> None:
        # Python's html.parser raises on this marked section instead of skipping it.
        html = b"<html><head><title>Odd</title></head><body><![bogus[x]]></body></html>"
        self.send_body(200, html, "text/html")

    def page_latin1(self, hit: int) -> None:
        html = "<html><head><title>Café crème</title></head></html>"
        self.send_body(200, html.encode("latin-1"), "text/html; charset=iso-8859-1")
