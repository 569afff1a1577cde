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



def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("openlfr")
        except PackageNotFoundError:  # run from a source tree without installing
            v = "unknown (not installed)"
        typer.echo(f"openlfr {v}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Open, accountable live facial recognition."""


from . import faces as _faces  # noqa: E402,F401  (registers commands)

for _mod in ("evaluate", "bench", "live", "governance", "publication", "serve", "transparency"):
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # a command group not present in this build
        if _e.name != f"{__name__}.{_mod}":
            raise


def main() -> None:  # pragma: no cover - console entry point
    app()
