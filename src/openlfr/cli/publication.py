"""``openlfr deployment publish|unpublish``: which ended deployments the public pages show.

An administrator publishes an ended deployment's record (counts, times, rates with their
intervals; never a name, image or template) with the authorising officer's rank; both are
audited. The records are served without login at ``/public`` by ``openlfr serve``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .governance import AsOpt, DbOpt, JsonOpt, _handled, _print_json, _setup, deployment_app, out


@deployment_app.command("publish")
@_handled
def deployment_publish(
    deployment: Annotated[int, typer.Argument(help="An ended deployment's id.")],
    authorising_rank: Annotated[str, typer.Option("--authorising-rank", help="The authorising officer's rank (e.g. Superintendent): the public record names a rank, never a person.")],
    db: DbOpt = None,
    as_user: AsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Publish an ended deployment's public transparency record (administrator; audited)."""
    from ..governance import publication

    gov, actor = _setup(db, as_user)
    publication.publish(gov, actor, deployment, authorising_rank)
    if json_out:
        from ..transparency.public import record

        return _print_json(record(gov, deployment, publication.published(gov)[deployment]))
    out.print(f"deployment {deployment} published: its record is on /public (no name, image or template)")


@deployment_app.command("unpublish")
@_handled
def deployment_unpublish(
    deployment: Annotated[int, typer.Argument(help="Deployment id.")],
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Withdraw a deployment's public record (administrator; audited)."""
    from ..governance import publication

    gov, actor = _setup(db, as_user)
    was = publication.unpublish(gov, actor, deployment)
    out.print(f"deployment {deployment}: public record withdrawn" if was else f"deployment {deployment} was not published")
