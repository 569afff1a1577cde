"""``openlfr user|watchlist|subject|deployment|alert|audit`` and ``openlfr purge``.

Every command finds the database in ``--db URL``, else ``$OPENLFR_DB``, else SQLite in the data
directory, and runs the automatic purge (overdue deployments stopped, their snapshots deleted,
alerts past retention deleted) before doing anything else.

Who acts: ``--as USER`` (or ``$OPENLFR_USER``); the password from ``$OPENLFR_ACTOR_PASSWORD``,
else ``$OPENLFR_PASSWORD`` (except in ``user add``, where ``$OPENLFR_PASSWORD`` is the new
user's password), else a prompt. Every login is audited. The first ``user add`` on an empty
database needs no login: it creates the first administrator (audited as ``bootstrap``).

Exit codes: 0 done; 1 audit chain broken; 2 refused by a rule or bad input; 3 login failed;
4 not allowed for your role.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import app

# markup=False: names from users and files (e.g. "[/x].jpg") are printed as they are, never parsed.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
out = Console(highlight=False, soft_wrap=True, markup=False)

DbOpt = Annotated[Optional[str], typer.Option("--db", help="Database URL (else $OPENLFR_DB, else SQLite in the data directory).", show_default=False)]
AsOpt = Annotated[Optional[str], typer.Option("--as", envvar="OPENLFR_USER", help="Act as this user ($OPENLFR_USER); password from $OPENLFR_ACTOR_PASSWORD or $OPENLFR_PASSWORD, else asked.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

user_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
watchlist_app = typer.Typer(help="Watchlists and their subjects.", no_args_is_help=True)
subject_app = typer.Typer(help="Subjects: erasure.", no_args_is_help=True)
deployment_app = typer.Typer(help="Deployments: plan, authorise, start, stop, show.", no_args_is_help=True)
alert_app = typer.Typer(help="Alerts: list, adjudicate, record outcomes.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(watchlist_app, name="watchlist")
app.add_typer(subject_app, name="subject")
app.add_typer(deployment_app, name="deployment")
app.add_typer(alert_app, name="alert")
app.add_typer(audit_app, name="audit")


class Role(str, Enum):
    operator = "operator"
    engagement_officer = "engagement_officer"
    watchlist_manager = "watchlist_manager"
    authorising_officer = "authorising_officer"
    auditor = "auditor"
    administrator = "administrator"
    supervisor = "supervisor"


class Category(str, Enum):
    wanted_by_courts = "wanted_by_courts"
    wanted_on_suspicion = "wanted_on_suspicion"
    missing_or_vulnerable = "missing_or_vulnerable"
    risk_of_harm = "risk_of_harm"


# -- plumbing -----------------------------------------------------------------------------------


def _clock():
    from ..governance.clock import SystemClock

    return SystemClock()


def _handled(fn):
    """Turn governance refusals into a message on stderr and an exit code."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from .common import governance_exit

        try:
            return fn(*args, **kwargs)
        except Exception as e:
            hit = governance_exit(e)
            if hit is None:
                raise
            err.print(f"{hit[1]}: {e}")
            raise typer.Exit(hit[0]) from None

    return wrapper


def _gov(db: str | None):
    """The governance services on the resolved database, after the automatic purge."""
    from ..governance.service import Governance

    gov = Governance(db, _clock())
    gov.housekeeping()
    return gov


def _secret(prompt: str, confirm: bool = False, env: str = "OPENLFR_PASSWORD") -> str:
    if not sys.stdin or not sys.stdin.isatty():
        # CliRunner and pipes: read a line (no echo to hide).
        line = sys.stdin.readline() if sys.stdin else ""
        if not line:
            err.print(f"error: {prompt.lower()} needed: set {env}=... or run the command interactively")
            raise typer.Exit(2)
        return line.rstrip("\n")
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def actor_password(as_user: str | None, allow_password_env: bool = True) -> str:
    """The acting user's password: $OPENLFR_ACTOR_PASSWORD, else $OPENLFR_PASSWORD, else asked."""
    if not as_user:
        err.print("error: who is acting? give --as USER (or set OPENLFR_USER)")
        raise typer.Exit(2)
    password = os.environ.get("OPENLFR_ACTOR_PASSWORD")
    if password is None and allow_password_env:
        password = os.environ.get("OPENLFR_PASSWORD")
    if password is None:
        password = _secret(f"Password for {as_user}", env="OPENLFR_ACTOR_PASSWORD")
    return password


def _actor(gov, as_user: str | None, allow_password_env: bool = True):
    return gov.login(as_user, actor_password(as_user, allow_password_env))


def _setup(db: str | None, as_user: str | None):
    gov = _gov(db)
    return gov, _actor(gov, as_user)


_REL = re.compile(r"^([+-]?)(\d+)\s*([smhdw])$")


def parse_when(text: str, end_of_day: bool = False, now: datetime | None = None) -> datetime:
    """ISO 8601 (a time without a zone is local time), ``now``, or ``+N``/``-N`` s/m/h/d/w from now."""
    now = now or _clock().now()
    t = text.strip().lower()
    if t == "now":
        return now
    m = _REL.match(t)
    if m:
        n, unit = int(m.group(2)) * (-1 if m.group(1) == "-" else 1), m.group(3)
        return now + timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: n})
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give an ISO 8601 date/time, 'now', or +N/-N followed by s, m, h, d or w") from None
    date_only = len(text.strip()) == 10
    if value.tzinfo is None:
        value = value.astimezone()  # local time
    if date_only and end_of_day:
        value += timedelta(days=1)
    return value.astimezone(timezone.utc)


def _local(iso: str | None, short: bool = False) -> str:
    """A stored (UTC) time in local time; ``short`` for table cells."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S %Z")


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


# -- users --------------------------------------------------------------------------------------


@user_app.command("add")
@_handled
def user_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[list[Role], typer.Option("--role", help="A role (repeat for several).")],
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Add a user. The password comes from $OPENLFR_PASSWORD when set, else it is asked for.

    On an empty database this creates the first administrator without a login (bootstrap).
    """
    gov = _gov(db)
    roles = [r.value for r in role]
    if gov.user_count() == 0:
        password = os.environ.get("OPENLFR_PASSWORD") or _secret(f"Password for {name}", confirm=True)
        gov.bootstrap_admin(name, password, roles)
        out.print(f"user {name} created ({', '.join(roles)}): the first administrator")
        return
    actor = _actor(gov, as_user, allow_password_env=False)
    password = os.environ.get("OPENLFR_PASSWORD") or _secret(f"Password for {name}", confirm=True)
    gov.create_user(actor, name, roles, password)
    out.print(f"user {name} created ({', '.join(roles)})")


@user_app.command("list")
@_handled
def user_list(db: DbOpt = None, as_user: AsOpt = None, json_out: JsonOpt = False) -> None:
    """List users and their roles."""
    gov, actor = _setup(db, as_user)
    users = gov.list_users(actor)
    if json_out:
        return _print_json(users)
    t = Table(title="users")
    for c in ("id", "name", "roles", "active", "created"):
        t.add_column(c)
    for u in users:
        t.add_row(str(u["id"]), u["name"], ", ".join(u["roles"]), "yes" if u["active"] else "no", _local(u["created_at"], True))
    out.print(t)


@user_app.command("roles")
@_handled
def user_roles(
    name: Annotated[str, typer.Argument()],
    role: Annotated[list[Role], typer.Option("--role", help="The user's roles from now on (repeat).")],
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Replace a user's roles."""
    gov, actor = _setup(db, as_user)
    gov.set_roles(actor, name, [r.value for r in role])
    out.print(f"user {name}: {', '.join(r.value for r in role)}")


@user_app.command("disable")
@_handled
def user_disable(name: Annotated[str, typer.Argument()], db: DbOpt = None, as_user: AsOpt = None) -> None:
    """Disable a user (they can no longer log in)."""
    gov, actor = _setup(db, as_user)
    gov.set_active(actor, name, False)
    out.print(f"user {name} disabled")


# -- watchlists ---------------------------------------------------------------------------------


def _enrol_images(ref: str, name: str, category: str, paths: list[Path], min_face: int, accept_low_quality: bool = False):
    """Quality-checked enrolment of one subject's images: (Watchlist, EnrolmentReport)."""
    from ..engine.pipeline import FaceEngine
    from ..watchlist.enrol import enrol_subjects
    from ..watchlist.model import Subject

    return enrol_subjects([Subject(ref, name, category, [str(p) for p in paths])], FaceEngine(), min_face=min_face, source=ref,
                          accept_low_quality=accept_low_quality)


def _enrol_source(path: Path, min_face: int):
    """Quality-checked enrolment of a folder or CSV: (Watchlist, EnrolmentReport)."""
    from ..engine.pipeline import FaceEngine
    from ..watchlist.enrol import load_watchlist

    return load_watchlist(path, FaceEngine(), min_face=min_face)


def _new_images(wl, subject_index: int, source: str, taken_at: datetime | None, low_quality_reason: str = ""):
    from ..engine.images import ImageError, media_type
    from ..governance.service import NewImage

    images = []
    paths = wl.template_image or [""] * wl.n_templates
    bands = wl.template_low_quality_band or [None] * wl.n_templates
    for j in range(wl.n_templates):
        if int(wl.template_subject[j]) != subject_index:
            continue
        p = Path(paths[j])
        data = p.read_bytes()
        try:
            kind = media_type(data, str(p))  # from the header, never from the file name
        except ImageError:
            kind = "application/octet-stream"
        images.append(NewImage(
            data=data, template=wl.templates[j], quality=float(wl.template_quality[j]),
            source=source or str(p), taken_at=taken_at, media_type=kind,
            low_quality_band=bands[j], low_quality_reason=low_quality_reason if bands[j] else "",
            second_template=None if wl.second_templates is None else wl.second_templates[j],
        ))
    return images


@watchlist_app.command("create")
@_handled
def watchlist_create(
    name: Annotated[str, typer.Argument()],
    description: Annotated[str, typer.Option(help="What the watchlist is for.")] = "",
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Create an empty watchlist."""
    gov, actor = _setup(db, as_user)
    w = gov.create_watchlist(actor, name, description)
    out.print(f"watchlist {w.id} {w.name} created")


@watchlist_app.command("add")
@_handled
def watchlist_add(
    watchlist: Annotated[str, typer.Argument(help="Watchlist name or id.")],
    images: Annotated[list[Path], typer.Argument(help="Reference images of the subject.", exists=True, dir_okay=False)],
    ref: Annotated[str, typer.Option(help="Your reference for the subject (unique in the watchlist).")],
    name: Annotated[str, typer.Option(help="The subject's name.")],
    reason: Annotated[str, typer.Option(help="Why the subject is on the watchlist.")],
    expires: Annotated[str, typer.Option(help="Expiry: ISO date/time or +N with d or w (e.g. +30d).")],
    category: Annotated[Optional[Category], typer.Option(help="Reason-for-inclusion category (not for --volunteer).", show_default=False)] = None,
    volunteer: Annotated[bool, typer.Option("--volunteer", help="A volunteer of a test deployment (a 'blue' watchlist entry): their alerts measure TPIR in the field and stay out of operational figures and outcomes.")] = False,
    source: Annotated[str, typer.Option(help="Where the images came from (e.g. custody record).")] = "",
    taken: Annotated[Optional[str], typer.Option(help="When the images were taken (ISO date).")] = None,
    min_face: Annotated[int, typer.Option(help="Smallest face width accepted (px).")] = 40,
    accept_low_quality: Annotated[bool, typer.Option("--accept-low-quality", help="Enrol images that fail only the size or sharpness check (e.g. a CCTV still); needs --low-quality-reason; audited; the subject's matches are then held to the stricter quality band.")] = False,
    low_quality_reason: Annotated[str, typer.Option(help="Why a reference below the quality gate is enrolled (with --accept-low-quality).")] = "",
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Enrol a subject (or add images to one): quality-checked images, their templates, expiry."""
    if accept_low_quality and not low_quality_reason.strip():
        err.print("error: --accept-low-quality needs --low-quality-reason TEXT (kept in the audit log)")
        raise typer.Exit(2)
    if volunteer and category is not None:
        err.print("error: a volunteer has the category 'volunteer'; leave out --category")
        raise typer.Exit(2)
    if not volunteer and category is None:
        err.print("error: give --category (or --volunteer for a volunteer of a test deployment)")
        raise typer.Exit(2)
    cat = "volunteer" if volunteer else category.value
    gov, actor = _setup(db, as_user)
    expires_at = parse_when(expires, end_of_day=True)
    taken_at = parse_when(taken) if taken else None
    from ..watchlist.model import WatchlistError

    try:
        wl, report = _enrol_images(ref, name, cat, images, min_face, **({"accept_low_quality": True} if accept_low_quality else {}))
    except WatchlistError as e:
        err.print(f"error: {e}")
        raise typer.Exit(2)
    for p, why in report.rejected:
        err.print(f"rejected {p}: {why}")
    for a in report.accepted:
        if a.low_quality_band:
            err.print(f"accepted below the quality gate (band {a.low_quality_band}) {a.path}: {a.note}")
    subj = gov.enrol_subject(actor, watchlist, ref, name, cat, reason, expires_at, _new_images(wl, 0, source, taken_at, low_quality_reason),
                             volunteer=volunteer)
    out.print(f"{'volunteer' if volunteer else 'subject'} {subj.id} ({ref}): {len(report.accepted)} image(s) enrolled, {len(report.rejected)} rejected; "
              f"expires {_local(subj.expires_at.isoformat())}")


def _csv_extras(path: Path) -> dict[str, dict[str, str]]:
    """Per-subject reason, expires, source and taken columns of an enrolment CSV (optional)."""
    import csv

    extras: dict[str, dict[str, str]] = {}
    if path.suffix.lower() != ".csv":
        return extras
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            sid = row.get("subject_id")
            if sid:
                e = extras.setdefault(sid, {})
                for k in ("reason", "expires", "source", "taken"):
                    if row.get(k) and k not in e:
                        e[k] = row[k]
    return extras


@watchlist_app.command("import")
@_handled
def watchlist_import(
    watchlist: Annotated[str, typer.Argument(help="Watchlist name or id.")],
    path: Annotated[Path, typer.Argument(help="A folder (<subject>/<image> or flat images) or a CSV (subject_id,name,image,category[,reason,expires,source,taken]).", exists=True)],
    category: Annotated[Optional[Category], typer.Option(help="Category for subjects without one.")] = None,
    reason: Annotated[Optional[str], typer.Option(help="Reason for inclusion for subjects without one.")] = None,
    expires: Annotated[Optional[str], typer.Option(help="Expiry for subjects without one: ISO date/time or +N with d or w (e.g. +30d).")] = None,
    source: Annotated[str, typer.Option(help="Source of the images, for those without one.")] = "",
    min_face: Annotated[int, typer.Option(help="Smallest face width accepted (px).")] = 40,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Enrol many subjects from a folder or a CSV (quality-checked), each with reason and expiry."""
    gov, actor = _setup(db, as_user)
    from ..governance.errors import GovernanceError, NotFound, PermissionDenied
    from ..watchlist.enrol import display_path
    from ..watchlist.model import WatchlistError

    extras = _csv_extras(path)
    try:
        wl, report = _enrol_source(path, min_face)
    except WatchlistError as e:
        err.print(f"error: {e}")
        raise typer.Exit(2)
    # Check every subject before enrolling any.
    plans = []
    for i, s in enumerate(wl.subjects):
        x = extras.get(s.id, {})
        cat = s.category if s.category != "unspecified" else (category.value if category else None)
        why = x.get("reason") or reason
        exp = x.get("expires") or expires
        problems = [w for w, v in (("a category", cat), ("a reason", why), ("an expiry", exp)) if not v]
        if problems:
            err.print(f"error: subject {s.id} lacks {', '.join(problems)} (give --category/--reason/--expires or CSV columns)")
            raise typer.Exit(2)
        plans.append((i, s, cat, why, parse_when(exp, end_of_day=True), x.get("source") or source,
                      parse_when(x["taken"]) if x.get("taken") else None))
    for p, why in report.rejected:
        err.print(f"rejected {p}: {why}")
    for s in report.excluded_subjects:
        err.print(f"excluded subject {s}: no accepted image")
    n, failed = 0, []
    for i, s, cat, why, exp, src, taken_at in plans:  # each subject in its own transaction: all of it or none
        try:
            gov.enrol_subject(actor, watchlist, s.id, s.name, cat, why, exp, _new_images(wl, i, src, taken_at))
            n += 1
        except (PermissionDenied, NotFound):  # the same for every subject: stop at the first
            raise
        except (GovernanceError, OSError) as e:
            failed.append(s.id)
            err.print(f"error: subject {s.id} not enrolled (none of its images): {e}")
    out.print(f"{n} subject(s) enrolled from {display_path(path)}: {len(report.accepted)} image(s) accepted, {len(report.rejected)} rejected"
              + (f"; {len(failed)} subject(s) not enrolled: {', '.join(failed)}" if failed else ""))
    if failed:
        raise typer.Exit(2)


def _backfill_engine():
    """The face engine the backfill computes with: RetinaFace and the second model when installed."""
    from ..engine.pipeline import FaceEngine

    return FaceEngine()


@watchlist_app.command("backfill-second")
@_handled
def watchlist_backfill_second(
    watchlist: Annotated[str, typer.Argument(help="Watchlist name or id.")],
    db: DbOpt = None,
    as_user: AsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add the second model's (SFace) template to references enrolled without one, from their stored images.

    Unexpired subjects only; running deployments keep their frozen snapshot. A reference whose
    image shows no usable face is left as it is and reported. Audited."""
    gov, actor = _setup(db, as_user)
    res = gov.backfill_second_templates(actor, watchlist, _backfill_engine())
    if json_out:
        return _print_json(res)
    for t in res["skipped_templates"]:
        err.print(f"skipped template {t['template_id']} (subject {t['subject_id']}): {t['reason']}"
                  + (f" ({t['detail']})" if t["detail"] else ""))
    out.print(f"watchlist {res['watchlist']}: {res['filled']} template(s) given a second template "
              f"({res['subjects']} subject(s)), {res['skipped']} skipped"
              + (": " + ", ".join(f"{n} {why}" for why, n in res["reasons"].items()) if res["reasons"] else ""))


@watchlist_app.command("list")
@_handled
def watchlist_list(
    watchlist: Annotated[Optional[str], typer.Argument(help="Show this watchlist's subjects.")] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List watchlists, or one watchlist's subjects (no templates or images are printed)."""
    gov, actor = _setup(db, as_user)
    if watchlist is None:
        rows = gov.list_watchlists(actor)
        if json_out:
            return _print_json(rows)
        t = Table(title="watchlists")
        # "no 2nd": templates of unexpired subjects without the second model's feature (backfill-second fills them)
        for c in ("id", "name", "subjects", "unexpired", "templates", "no 2nd", "description"):
            t.add_column(c)
        for w in rows:
            t.add_row(str(w["id"]), w["name"], str(w["subjects"]), str(w["active_subjects"]), str(w["templates"]),
                      str(w.get("second_missing", "-")), w["description"])
        out.print(t)
        return
    rows = gov.list_subjects(actor, watchlist)
    if json_out:
        return _print_json(rows)
    t = Table(title=f"watchlist {watchlist}")
    for c in ("id", "ref", "name", "category", "expires", "images", "templates", "added by"):
        t.add_column(c)
    for s in rows:
        exp = _local(s["expires_at"], True) + (" (expired)" if s["expired"] else "")
        t.add_row(str(s["id"]), s["ref"], s["name"], s["category"], exp, str(len(s["images"])), str(s["templates"]), s["added_by"] or "-")
    out.print(t)


def _subject_id(gov, actor, subject: str, watchlist: str | None) -> int:
    if watchlist is None:
        if not subject.isdigit():
            err.print("error: give the subject's id (see `openlfr watchlist list NAME`), or --watchlist with its reference")
            raise typer.Exit(2)
        return int(subject)
    for s in gov.list_subjects(actor, watchlist):
        if s["ref"] == subject:
            return s["id"]
    err.print(f"error: no subject {subject} on watchlist {watchlist}")
    raise typer.Exit(2)


@watchlist_app.command("expire")
@_handled
def watchlist_expire(
    subject: Annotated[str, typer.Argument(help="Subject id (or reference, with --watchlist).")],
    watchlist: Annotated[Optional[str], typer.Option(help="Read SUBJECT as a reference on this watchlist.")] = None,
    at: Annotated[Optional[str], typer.Option(help="Expire at this time instead of now.")] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Expire a subject (now, or earlier than planned): they join no new deployment snapshot."""
    gov, actor = _setup(db, as_user)
    sid = _subject_id(gov, actor, subject, watchlist)
    s = gov.expire_subject(actor, sid, parse_when(at) if at else None)
    out.print(f"subject {s.id} expires {_local(s.expires_at.isoformat())}")


# -- subjects -----------------------------------------------------------------------------------


@subject_app.command("erase")
@_handled
def subject_erase(
    subject: Annotated[str, typer.Argument(help="Subject id (or reference, with --watchlist).")],
    watchlist: Annotated[Optional[str], typer.Option(help="Read SUBJECT as a reference on this watchlist.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Erase a subject: every image, template and alert of theirs. The audit keeps only that it happened."""
    gov, actor = _setup(db, as_user)
    sid = _subject_id(gov, actor, subject, watchlist)
    if not yes and sys.stdin and sys.stdin.isatty():
        typer.confirm(f"Erase subject {sid} and all their images, templates and alerts?", abort=True)
    counts = gov.erase_subject(actor, sid)
    out.print(f"subject {sid} erased: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))


# -- deployments --------------------------------------------------------------------------------


@deployment_app.command("plan")
@_handled
def deployment_plan(
    name: Annotated[str, typer.Option(help="A name for the deployment.")],
    use_case: Annotated[str, typer.Option(help="Purpose (use case).")],
    location: Annotated[str, typer.Option(help="Location.")],
    zone: Annotated[str, typer.Option(help="Zone of recognition.")],
    start: Annotated[str, typer.Option(help="Start: ISO date/time (local unless a zone is given), now, or +N with s, m, h or d (e.g. +2h).")],
    end: Annotated[str, typer.Option(help="End: ISO date/time, or +N with s, m, h or d counted from the start (e.g. +4h).")],
    camera: Annotated[list[str], typer.Option("--camera", help="A camera name (repeat for several).")],
    watchlist: Annotated[str, typer.Option(help="Watchlist name or id.")],
    threshold: Annotated[Optional[float], typer.Option(help="A manual distance threshold (alert below it); needs --threshold-reason. Default: the calibrated scoring model for the watchlist's size and --target-fpir.", show_default=False)] = None,
    threshold_reason: Annotated[str, typer.Option(help="Why a manual --threshold (required with it; kept in the audit and the report).")] = "",
    target_fpir: Annotated[float, typer.Option(help="Target false alerts per face seen (the calibrated default meets it in every quality band).")] = 0.001,
    dpia: Annotated[str, typer.Option(help="DPIA reference.")] = "",
    signage_confirmed: Annotated[bool, typer.Option("--signage-confirmed", help="Signage is in place.")] = False,
    notices_confirmed: Annotated[bool, typer.Option("--notices-confirmed", help="Public notices were given.")] = False,
    authorising_officer: Annotated[Optional[str], typer.Option(help="The only user who may authorise it.")] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Plan a deployment (it cannot start until an authorising officer authorises it)."""
    gov, actor = _setup(db, as_user)
    now = _clock().now()
    starts_at = parse_when(start, now=now)
    # "--end +4h" is four hours after the start (not after now) when a start is given
    ends_at = parse_when(end, now=starts_at if _REL.match(end.strip().lower()) else now)
    d = gov.plan_deployment(
        actor, name=name, use_case=use_case, location=location, zone=zone, starts_at=starts_at,
        ends_at=ends_at, cameras=camera, threshold=threshold, watchlist=watchlist,
        signage_confirmed=signage_confirmed, notices_confirmed=notices_confirmed, dpia_ref=dpia,
        authorising_officer=authorising_officer, threshold_reason=threshold_reason, target_fpir=target_fpir,
    )
    from ..governance.thresholds import expected_line

    out.print(f"deployment {d.id} planned: {_local(d.starts_at.isoformat())} to {_local(d.ends_at.isoformat())}")
    ev = json.loads(d.threshold_evidence) if d.threshold_evidence else None
    if ev:
        out.print(f"threshold: {ev.get('reason')}")
        out.print(expected_line(ev))


@deployment_app.command("authorise")
@_handled
def deployment_authorise(
    deployment: Annotated[int, typer.Argument(help="Deployment id.")],
    note: Annotated[str, typer.Option(help="The authorising officer's note.")] = "",
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Authorise a planned deployment (authorising officer; not the planner)."""
    gov, actor = _setup(db, as_user)
    gov.authorise_deployment(actor, deployment, note)
    out.print(f"deployment {deployment} authorised by {actor.name}")


@deployment_app.command("start")
@_handled
def deployment_start(deployment: Annotated[int, typer.Argument()], db: DbOpt = None, as_user: AsOpt = None) -> None:
    """Start an authorised deployment inside its time window (freezes its watchlist snapshot)."""
    gov, actor = _setup(db, as_user)
    d = gov.start_deployment(actor, deployment)
    out.print(f"deployment {d.id} active until {_local(d.ends_at.isoformat())}")


@deployment_app.command("stop")
@_handled
def deployment_stop(
    deployment: Annotated[int, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why it stops.")] = "stopped",
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Stop an active deployment (its snapshot is deleted) or cancel one not yet started."""
    gov, actor = _setup(db, as_user)
    d = gov.stop_deployment(actor, deployment, reason)
    out.print(f"deployment {d.id} {d.status}")


@deployment_app.command("show")
@_handled
def deployment_show(
    deployment: Annotated[Optional[int], typer.Argument(help="Deployment id (all deployments when left out).")] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a deployment: plan, authorisation, snapshot, faces seen and alert figures."""
    gov, actor = _setup(db, as_user)
    if deployment is None:
        rows = gov.list_deployments(actor)
        if json_out:
            return _print_json(rows)
        t = Table(title="deployments")
        for c in ("id", "name", "status", "start", "end", "cameras", "watchlist"):
            t.add_column(c)
        for d in rows:
            t.add_row(str(d["id"]), d["name"], d["status"], _local(d["starts_at"], True), _local(d["ends_at"], True), ", ".join(d["cameras"]), d["watchlist"]["name"])
        out.print(t)
        return
    d = gov.get_deployment(actor, deployment)
    if json_out:
        return _print_json(d)
    from ..transparency.figures import alert_precision as precision_text
    from ..transparency.figures import false_alert_rate as far_text

    t = Table(title=f"deployment {d['id']}: {d['name']}", show_header=False)
    t.add_column("field")
    t.add_column("value")
    snap = d["snapshot"]
    fa = d["alerts"]
    rows = [
        ("status", d["status"] + (f" ({d['end_reason']})" if d["end_reason"] else "")),
        ("use case", d["use_case"]), ("location", d["location"]), ("zone", d["zone"]),
        ("window", f"{_local(d['starts_at'])} to {_local(d['ends_at'])}"),
        ("cameras", ", ".join(d["cameras"])), ("threshold", f"{d['threshold']:g}"),
        ("watchlist", f"{d['watchlist']['name']} ({d['watchlist']['id']})"),
        ("signage / notices", f"{'yes' if d['signage_confirmed'] else 'no'} / {'yes' if d['notices_confirmed'] else 'no'}"),
        ("DPIA", d["dpia_ref"] or "-"), ("planned by", d["planned_by"] or "-"),
        ("authorising officer", d["authorising_officer"] or "-"),
        ("authorised", "; ".join(f"{a['officer']} at {_local(a['decided_at'])}" for a in d["authorisations"]) or "no"),
        ("started / ended", f"{_local(d['started_at'])} / {_local(d['ended_at'])}"),
        ("snapshot", "-" if snap is None else f"{snap['subjects']} subjects, {snap['templates']} templates; "
                                                + (f"deleted {_local(snap['deleted_at'])}" if snap["deleted_at"] else "held")),
        ("faces seen", f"{d['faces_seen']['total']}" + ("" if not d["faces_seen"]["by_camera"] else
                       " (" + ", ".join(f"{c} {n}" for c, n in d["faces_seen"]["by_camera"].items()) + ")")),
        ("alerts", f"{fa['total']} (true {fa['true_alerts']}, false {fa['false_alerts']}, unadjudicated {fa['unadjudicated']})"),
        ("false alert rate", f"{far_text(fa['false_alerts'], d['faces_seen']['total'])['text']} (false alerts / faces seen)"),
        ("alert precision", f"{precision_text(fa['true_alerts'], fa['true_alerts'] + fa['false_alerts'])['text']} (true alerts / adjudicated alerts)"),
    ]
    ev = d.get("threshold_evidence")
    if ev and ev.get("kind") in ("openlfr scoring model", "manual threshold"):
        from ..governance.thresholds import expected_line

        rows.insert(6, ("threshold reason", str(ev.get("reason"))))
        rows.insert(7, ("expected false alerts", expected_line(ev) or "-"))
    elif ev:  # openlfr calibrate --store-for
        rows.insert(6, ("threshold evidence", f"calibrated for {ev.get('watchlist_size')} subjects at FPIR {ev.get('target_fpir')}; "
                                              f"expected TPIR {ev.get('tpir')}"))
    vol = d.get("volunteers")
    if vol and (vol["alerts"] or vol["passes"]):  # test deployments: kept apart from the operational figures
        rows.append(("volunteers (test)", f"{vol['alerts']} alerts (true {vol['true_alerts']}, false {vol['false_alerts']}); "
                     f"{vol['passes']} passes; field TPIR " + ("-" if vol["field_tpir"] is None else f"{vol['field_tpir']:.1%}")))
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)


# -- alerts -------------------------------------------------------------------------------------


@alert_app.command("list")
@_handled
def alert_list(
    deployment: Annotated[Optional[int], typer.Option(help="Only this deployment's alerts.")] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List alerts (without crops or templates)."""
    gov, actor = _setup(db, as_user)
    rows = gov.list_alerts(actor, deployment)
    if json_out:
        return _print_json(rows)
    # Fits 80 columns: short headings, long cells cut with an ellipsis (--json has everything).
    from rich import box

    t = Table(title="alerts", box=box.SIMPLE_HEAD, pad_edge=False)
    # dist<thr: the distance and the alert's own threshold for that face (not recorded before migration 0009)
    for c, w in (("id", 5), ("dep", 3), ("camera", 8), ("subject", 14), ("dist<thr", 9), ("time", 16), ("status", 12)):
        t.add_column(c, max_width=w, no_wrap=True, overflow="ellipsis")
    short = {"true_alert": "true", "false_alert": "false"}
    for a in rows:
        status = short.get(a["adjudication"], "pending")
        if a["engagement"]:
            status += f"/{a['engagement'][1].replace('_', ' ')}"
        t.add_row(str(a["id"]), str(a["deployment_id"]), a["camera"], f"{a['subject_name']} ({a['subject_id']})",
                  f"{a['distance']:.2f}<{a['threshold']:.2f}" if a.get("threshold") is not None else f"{a['distance']:.3f}",
                  _local(a["occurred_at"], True), status)
    out.print(t, soft_wrap=False, width=min(out.width, 80))


class Decision(str, Enum):
    true = "true"
    false = "false"


@alert_app.command("adjudicate")
@_handled
def alert_adjudicate(
    alert: Annotated[int, typer.Argument()],
    decision: Annotated[Decision, typer.Argument(help="true (a true alert) or false (a false alert).")],
    note: Annotated[str, typer.Option()] = "",
    reason: Annotated[str, typer.Option(help="Why an earlier decision is changed (required to change one).")] = "",
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """The operator's adjudication: true alert or false alert.

    Decisions are append-only: changing one needs --reason, and after an engagement outcome or
    the deployment's end only a supervisor may change it. Both decisions stay in the history."""
    gov, actor = _setup(db, as_user)
    before = gov.adjudications(actor, alert) if actor.can("alert.read") else []
    j = gov.adjudicate(actor, alert, decision.value, note, reason)
    if before and before[-1]["id"] == j.id:
        out.print(f"alert {alert}: already {decision.value} alert (decided by {before[-1]['by']}); nothing changed")
    elif before:
        out.print(f"alert {alert}: changed from {before[-1]['decision'].replace('_', ' ')} to {decision.value} alert "
                  f"(reason recorded; {len(before) + 1} decisions in its history)")
    else:
        out.print(f"alert {alert}: {decision.value} alert")


class Result(str, Enum):
    confirmed = "confirmed"
    unconfirmed = "unconfirmed"


class Outcome(str, Enum):
    arrest = "arrest"
    other_action = "other_action"
    no_further_action = "no_further_action"
    no_engagement = "no_engagement"


@alert_app.command("outcome")
@_handled
def alert_outcome(
    alert: Annotated[int, typer.Argument()],
    result: Annotated[Result, typer.Option(help="After engagement: confirmed or unconfirmed.")],
    outcome: Annotated[Outcome, typer.Option(help="arrest, other_action, no_further_action or no_engagement.")],
    note: Annotated[str, typer.Option()] = "",
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """The engagement officer's result and outcome for a true alert."""
    gov, actor = _setup(db, as_user)
    gov.record_outcome(actor, alert, result.value, outcome.value, note)
    out.print(f"alert {alert}: {result.value}, {outcome.value}")


# -- purge and audit ----------------------------------------------------------------------------


@app.command()
@_handled
def purge(
    retention_days: Annotated[Optional[int], typer.Option(help="Set the alert retention (days) from now on.")] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Delete alerts (and crops) past retention and snapshots of ended deployments. Also runs by itself."""
    gov, actor = _setup(db, as_user)
    if retention_days is not None:
        gov.set_retention_days(actor, retention_days)
    r = gov.purge(actor)
    out.print(f"purged now: {r.alerts} alert(s) older than {r.retention_days} days and {r.snapshots} snapshot(s); "
              f"{len(r.deployments_ended)} deployment(s) ended")
    a = r.automatic
    since = f"since the last purge report ({_local(a.since)})" if a.since else "before this first purge report"
    if a.entries:
        ended = f", {len(a.deployments_ended)} deployment(s) ended ({', '.join(map(str, a.deployments_ended))})" if a.deployments_ended else ""
        out.print(f"already purged automatically {since}: {a.alerts} alert(s), {a.snapshots} snapshot(s){ended}; "
                  f"{a.entries} audit entries by system:purge/system:schedule, {_local(a.first_at)} to {_local(a.last_at)}")
    else:
        out.print(f"nothing was purged automatically {since}")


@audit_app.command("verify")
@_handled
def audit_verify(
    file: Annotated[Optional[Path], typer.Option("--file", help="Verify an exported log (JSON lines) instead of the database.", exists=True, dir_okay=False)] = None,
    anchor: Annotated[Optional[str], typer.Option("--anchor", help="HASH@SEQ printed by `audit export` (kept elsewhere): any rewrite up to that entry, truncation included, is detected.", show_default=False)] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Check the keyed audit chain (and the records it covers); exit 1 naming the first break.

    Nothing is written before the check: the login is checked without an entry, the chain is
    verified, and only then (when it is intact) is the login recorded."""
    from ..governance import audit
    from ..governance.audit_key import AuditKeyError, load_key

    mark = audit.Anchor.parse(anchor) if anchor else None
    if file is not None:
        try:
            key = load_key(create=False)
        except AuditKeyError as e:
            key = None
            err.print(f"note: {e}; MACs are not checked")
        with file.open(encoding="utf-8", errors="replace") as f:
            result = audit.verify_records(audit.read_export(f), key=key, anchor=mark)
    else:
        from ..governance.service import Governance

        gov = Governance(db, _clock())  # no automatic purge before the check: it would write
        actor = gov.authenticate(as_user or "", actor_password(as_user))
        result = gov.verify_audit(actor, mark)
        if result.ok:
            gov.record_login(actor)
    if result.ok:
        out.print(str(result))
        return
    err.print(str(result))
    if file is None:
        err.print("nothing was written to the log (it stays as found, for investigation)")
    raise typer.Exit(1)


@audit_app.command("export")
@_handled
def audit_export(
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Export the audit log as JSON lines (verifiable with `openlfr audit verify --file`), and
    print its anchor HASH@SEQ on stderr: keep it elsewhere, and `audit verify --anchor` detects
    any later rewrite up to that entry."""
    gov, actor = _setup(db, as_user)
    if out_file is None:
        n = gov.export_audit(actor, sys.stdout)
        sys.stdout.flush()
    else:
        with out_file.open("w", encoding="utf-8") as f:
            n = gov.export_audit(actor, f)
        err.print(f"{n} entries written to {out_file}")
    if n.anchor is not None:
        err.print(f"anchor: {n.anchor}")
