"""The ``openlfr`` command: one Typer application, one module per group of commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="openlfr",
    help="Open, accountable live facial recognition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import faces as _faces  # noqa: E402,F401  (registers commands)

for _mod in ("evaluate", "bench", "live", "governance", "serve", "transparency"):
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # a command group not present in this build
        if _e.name != f"{__name__}.{_mod}":
            raise


def main() -> None:  # pragma: no cover - console entry point
    app()
