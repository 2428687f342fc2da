"""Flower never listens outside localhost without authentication, however it is started.

Flower's own defaults are the opposite: with no address it binds every interface, and the
project's flowerconfig.py (which says 127.0.0.1) is only read from the directory Flower starts
in. So the rule is enforced where Flower binds its port, after it has merged FLOWER_*
variables, its --conf file and the command line: `Flower.start_http_server` is wrapped to

- listen on 127.0.0.1 when no address was given (instead of all interfaces);
- refuse to start, before anything listens, on any other address than loopback (0.0.0.0, ::,
  a LAN address, a name that does not resolve to loopback only) unless basic auth or Flower's
  OAuth `auth` option is set;
- ask for that login on /metrics too, which Flower itself leaves open.

`celery -A myproject flower` (and the `flower -A myproject` shim, and `python -m flower`)
imports myproject.celery inside Celery's command group, which has already chosen the `flower`
sub-command by then: myproject/celery.py calls install_if_flower(), so only Flower's process
is touched. This module imports nothing but the standard library until then.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterable

DEFAULT_ADDRESS = "127.0.0.1"


class FlowerExposed(Exception):
    """Flower would listen on the network without authentication."""


def is_loopback(address: str) -> bool:
    """True if every address `address` resolves to (as Tornado resolves it to bind) is loopback.

    A name that does not resolve counts as not loopback: the guard fails closed.
    """
    try:
        infos = socket.getaddrinfo(
            address, None, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except (OSError, UnicodeError):
        return False
    if not infos:
        return False
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            return False
    return True


def is_authenticated(basic_auth: Iterable[str] | None, auth: str | None) -> bool:
    """Flower's own test (views: `options.basic_auth or options.auth`), without weak values.

    FLOWER_BASIC_AUTH="" gives basic_auth [""]: nobody can log in, but it was surely not meant
    as authentication, so it does not open the network either. Flower compares "user:password"
    as sent with each entry, so an entry without a user or a password (":", "admin:") lets in
    whoever sends that: one such entry and Flower is open, whatever else is set.
    """
    entries = [entry for entry in basic_auth or () if entry]
    if any(not _user_and_password(entry) for entry in entries):
        return False
    return bool(entries) or bool(auth)


def _user_and_password(entry: str) -> bool:
    user, _, password = entry.partition(":")
    return bool(user.strip()) and bool(password.strip())


def listen_address(address: str | None, basic_auth: Iterable[str] | None, auth: str | None) -> str:
    """The address Flower may bind, or FlowerExposed saying why it must not start."""
    if not address:
        return DEFAULT_ADDRESS
    if is_loopback(address) or is_authenticated(basic_auth, auth):
        return address
    raise FlowerExposed(
        f"Flower refused to start: it would listen on {address!r}, which is not a loopback "
        "address, without authentication, so anyone who can reach it could read every task's "
        "arguments and results, revoke tasks and shut workers down. Either set authentication "
        "(FLOWER_BASIC_AUTH=user:password or --basic-auth=user:password, each entry with a "
        "user and a password; or Flower's OAuth "
        "--auth option), or keep Flower on localhost: unset FLOWER_ADDRESS and drop --address "
        "(it then listens on 127.0.0.1 only), or set FLOWER_ADDRESS=127.0.0.1 and put an "
        "authenticating proxy in front. Nothing was started."
    )


def install() -> None:
    """Wrap Flower's start_http_server with the rule above (once)."""
    from flower.app import Flower

    original = Flower.start_http_server
    if getattr(original, "guarded", False):
        return

    def start_http_server(self):
        options = self.options
        if not options.unix_socket:  # a Unix socket is not on the network: nothing to check
            try:
                # Set on Flower's options object, so its "Visit me at" line shows it too.
                options.address = listen_address(options.address, options.basic_auth, options.auth)
            except FlowerExposed as refusal:
                # Before any socket is bound or any thread started: the process just ends.
                sys.exit(f"\n{refusal}\n")
        return original(self)

    start_http_server.guarded = True
    Flower.start_http_server = start_http_server
    _guard_metrics()


def _guard_metrics() -> None:
    """/metrics behind Flower's own login when it has one.

    Flower serves its Prometheus metrics (every task name, every worker) to anyone, even with
    basic auth or OAuth on: a scraper then sends the same credentials. /healthcheck, which says
    only "OK", stays open for load balancers.
    """
    from flower.views.monitor import Metrics
    from tornado.web import HTTPError

    original = Metrics.get

    async def get(self):
        options = self.application.options
        if (any(options.basic_auth or ()) or options.auth) and not self.current_user:
            raise HTTPError(401)
        return await original(self)

    Metrics.get = get


def install_if_flower() -> None:
    """Install the guard when this process is Celery's `flower` sub-command, else do nothing."""
    click = sys.modules.get("click")
    context = click.get_current_context(silent=True) if click else None
    while context is not None:
        if context.invoked_subcommand == "flower":
            install()
            return
        context = context.parent
