"""`flower -A myproject --port=5555`: the tutorial's pre-2.0 Flower command, still working.

Flower 2 dropped its own `flower` executable in favour of `celery -A myproject flower`; this
entry point turns the old form into the new one.
"""

from __future__ import annotations

import sys


def translate(argv: list[str]) -> list[str]:
    """Move Celery's own options (-A/--app, -b/--broker) in front of the `flower` sub-command."""
    celery_args, flower_args = split_celery_options(argv)
    return ["celery", *celery_args, "flower", *flower_args]


def split_celery_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Celery's own options (-A/--app, -b/--broker, with their values), and the rest."""
    celery_args: list[str] = []
    flower_args: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("-A", "--app", "-b", "--broker"):
            celery_args += [arg, next(args, "")]
        elif arg.startswith(("--app=", "--broker=")) or (arg[:2] in ("-A", "-b") and len(arg) > 2):
            celery_args.append(arg)
        else:
            flower_args.append(arg)
    return celery_args, flower_args


def main() -> None:
    from celery.bin.celery import main as celery_main

    sys.argv = translate(sys.argv[1:])
    sys.exit(celery_main())
