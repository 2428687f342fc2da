"""Read by Celery's command line before it parses its arguments, in every `celery ...` process
of this environment, from any directory (entry point `celery.commands`, pyproject.toml).

It only acts for Flower. The tutorial's `celery flower -A proj --port=5555` puts -A after the
sub-command, where Celery 5 ignores it: Flower then started on Celery's default app with
Flower's own default of every interface and no login, and, outside the repo root (where
flowerconfig.py is read), nothing of this project loaded to stop it. Here the arguments are put
in the order Celery reads (`celery -A proj flower --port=5555`, as the `flower` shim does), and
Flower's guard (operations/flower_guard.py) goes in before Flower starts, whatever app it runs.
"""

from __future__ import annotations

import contextlib
import sys

import click

from .flower_cli import split_celery_options

#: Celery's own options that take a value (`celery --help`): what follows them is not the
#: sub-command.
CELERY_VALUE_OPTIONS = frozenset(
    {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir"}
)


def subcommand_at(argv: list[str]) -> int | None:
    """Where Celery's sub-command is in argv: the first argument that is neither an option
    nor an option's value (`celery -A proj worker -Q flower`: the sub-command is worker)."""
    skip = False
    for at, arg in enumerate(argv[1:], start=1):
        if skip:
            skip = False
        elif arg in CELERY_VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return at
    return None


def reorder(argv: list[str]) -> list[str]:
    """argv with the -A/-b options given after the `flower` sub-command moved in front of it."""
    at = subcommand_at(argv)
    if at is None or argv[at] != "flower":
        return argv
    celery_args, flower_args = split_celery_options(argv[at + 1 :])
    return [*argv[:at], *celery_args, "flower", *flower_args]


def _prepare_flower() -> None:
    sys.argv = reorder(sys.argv)
    at = subcommand_at(sys.argv)
    if at is not None and sys.argv[at] == "flower":
        from .flower_guard import install

        install()


# Without Flower installed there is no `flower` sub-command to guard.
with contextlib.suppress(ImportError):
    _prepare_flower()


@click.command("project-flower-guard", hidden=True)
def command() -> None:
    """What Celery registers for this plugin; its work is done when Celery loads it."""
    click.echo(__doc__)
