"""``openlfr report``, ``openlfr explain-rates``, ``openlfr calibrate``, ``openlfr evaluate video``
and ``openlfr deployment volunteer-passes``: transparency (see docs/transparency.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from . import app

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

try:
    from .evaluate import evaluate_app
except ModuleNotFoundError as _e:  # a build without the evaluation commands: make the group here
    if _e.name != f"{__package__}.evaluate":
        raise
    evaluate_app = typer.Typer(help="Measure recognition accuracy.", no_args_is_help=True)
    app.add_typer(evaluate_app, name="evaluate")

from .governance import AsOpt, DbOpt, _handled, _print_json as _dump, _setup, deployment_app  # noqa: E402

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"error: {message}")
    raise typer.Exit(code)


# -- report -------------------------------------------------------------------------------------


@app.command("report")
@_handled
def report(
    deployment: Annotated[int, typer.Argument(help="Deployment id.")],
    html: Annotated[Optional[Path], typer.Option("--html", help="Write the report as a self-contained HTML page.")] = None,
    pdf: Annotated[Optional[Path], typer.Option("--pdf", help="Write the report as a PDF.")] = None,
    json_out: JsonOpt = False,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """A deployment's report (auditor or administrator): when, where, why, who authorised; watchlist; threshold and how it was chosen; cameras and faces seen; alerts, outcomes, false alert rate and alert precision side by side; time to adjudication; what was deleted and when."""
    from ..transparency.report import collect, render_html, render_pdf, render_text

    gov, actor = _setup(db, as_user)
    r = collect(gov, actor, deployment)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(r), encoding="utf-8")
    if pdf is not None:
        render_pdf(r, pdf)
    if json_out:
        _dump(r.data)
    else:
        out.print(render_text(r), markup=False)
    for what, p in (("HTML", html), ("PDF", pdf)):
        if p is not None:
            err.print(f"{what} report: {p}")


# -- base rates ---------------------------------------------------------------------------------


@app.command("explain-rates")
def explain_rates(
    faces: Annotated[int, typer.Option("--faces", min=1, help="Faces passing the cameras.", show_default=False)],
    watchlisted_passers: Annotated[float, typer.Option("--watchlisted-passers", min=0, help="How many of them are on the watchlist.", show_default=False)],
    tpir: Annotated[float, typer.Option("--tpir", min=0, max=1, help="True positive identification rate (0..1).", show_default=False)],
    fpir: Annotated[float, typer.Option("--fpir", min=0, max=1, help="False positive identification rate (0..1).", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Expected true and false alerts, the alert precision and the false alert rate, and why they differ."""
    from ..transparency.rates import expected_alerts, explain

    try:
        r = expected_alerts(faces, watchlisted_passers, tpir, fpir)
    except ValueError as e:
        _fail(str(e))
    if json_out:
        _dump(r.to_json() | {"explanation": explain(r)})
        return
    out.print(explain(r), markup=False)


# -- calibration --------------------------------------------------------------------------------


@app.command("calibrate")
def calibrate(
    images: Annotated[Path, typer.Option(help="Held-out identity folders: DIR/<identity>/<image>.", show_default=False)],
    watchlist_size: Annotated[int, typer.Option("--watchlist-size", min=1, help="Subjects on the watchlist (N).", show_default=False)],
    target_fpir: Annotated[float, typer.Option("--target-fpir", min=1e-9, max=0.999999, help="Target FPIR: the chance a face not on the watchlist alerts.")] = 0.001,
    method: Annotated[str, typer.Option(help="cautious (smaller of the two thresholds), independence or direct.")] = "cautious",
    replicates: Annotated[int, typer.Option(min=1, max=10000, help="Simulated N-subject galleries.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the simulation and the bootstrap.")] = 0,
    same_person: Annotated[Optional[Path], typer.Option("--same-person", help="CSV identity_a,identity_b: label errors (one person under two names), left out of every comparison.", exists=True, dir_okay=False)] = None,
    groups: Annotated[Optional[Path], typer.Option(help="CSV identity,group: demographic differentials at the threshold.", exists=True, dir_okay=False)] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the calibration chart (PNG).")] = None,
    groups_plot: Annotated[Optional[Path], typer.Option("--groups-plot", help="Write the differentials chart (PNG).")] = None,
    store_for: Annotated[Optional[int], typer.Option("--store-for", help="Set this planned deployment's threshold and keep the evidence with it (operator; audited).")] = None,
    scoring_model: Annotated[bool, typer.Option("--scoring-model", help="Check the packaged scoring model (quality bands, SFace fusion) at its own thresholds on these folders instead of calibrating a raw distance; with --store-for, store the model with the check (the way to calibrate a deployment).")] = False,
    json_out: JsonOpt = False,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Re-use descriptors cached from earlier runs.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """The threshold that meets a target FPIR for an N-subject watchlist, from held-out identity folders, with the expected TPIR there and its 95% confidence interval. With --scoring-model: the packaged scoring model checked on the folders instead (FPIR and FNIR per quality band at its thresholds, and whether the target holds), stored with the check by --store-for."""
    from ..evaluate.lfw import EvaluationError
    from ..transparency import calibrate as cal_mod
    from ..transparency import differentials as dif

    if method not in cal_mod.METHODS:
        _fail(f"--method is one of {', '.join(cal_mod.METHODS)}")
    if scoring_model:
        given = [o for o, v in (("--groups", groups), ("--plot", plot), ("--groups-plot", groups_plot),
                                ("--method", None if method == "cautious" else method)) if v is not None]
        if given:
            _fail(f"{', '.join(given)} belong to the raw distance calibration, not to --scoring-model")
        _check_scoring_model(images, watchlist_size, target_fpir, replicates, seed, same_person, store_for, json_out,
                             cache, progress, db, as_user)
        return
    group_map = None
    if groups is not None:
        try:
            group_map = dif.read_groups(groups)
        except dif.GroupsError as e:
            _fail(str(e))
    try:
        pairs = cal_mod.read_same_person(same_person) if same_person is not None else None
        cal = cal_mod.calibrate_folder(images, watchlist_size, target_fpir, method=method, replicates=replicates, seed=seed,
                                       progress=progress and not json_out, use_cache=cache, same_person=pairs)
    except (EvaluationError, cal_mod.CalibrationError) as e:
        _fail(str(e))
    s = cal.summary
    if plot is not None:
        cal_mod.plot_calibration(cal, plot)
        s["plot"] = str(plot)
    d = None
    if group_map is not None:
        d = dif.group_rates(group_map, dif.counts_from_calibration(cal, s["threshold"]), s["threshold"], seed=seed)
        s["differentials"] = d.to_json()
        if groups_plot is not None:
            dif.plot_differentials(d, groups_plot)
    if store_for is not None:
        _store(store_for, s, db, as_user)
    if json_out:
        _dump(s)
        return
    for line in cal_mod.describe(s):
        out.print(line, markup=False)
    if d is not None:
        for line in dif.describe(d):
            out.print(line, markup=False)
    if plot is not None:
        out.print(f"chart: {plot}")
    if store_for is not None:
        out.print(f"deployment {store_for}: threshold set to {s['threshold']:.4f}, evidence stored")


def _check_scoring_model(images: Path, watchlist_size: int, target_fpir: float, replicates: int, seed: int,
                         same_person: Path | None, store_for: int | None, json_out: bool, cache: bool, progress: bool,
                         db, as_user) -> None:
    """``calibrate --scoring-model``: the packaged scoring model checked on the folders, stored with the check."""
    from ..evaluate.lfw import EvaluationError
    from ..transparency import calibrate as cal_mod
    from ..transparency import model_check as mc

    try:
        pairs = cal_mod.read_same_person(same_person) if same_person is not None else None
        s = mc.check_scoring_model(images, watchlist_size, target_fpir, replicates=replicates, seed=seed,
                                   progress=progress and not json_out, use_cache=cache, same_person=pairs)
    except (EvaluationError, cal_mod.CalibrationError) as e:
        _fail(str(e))
    if s["verdict"] == "exceeds":
        err.print(f"warning: the packaged scoring model exceeds its target FPIR on this data: {s['summary']}")
    ev = None
    if store_for is not None:
        ev = mc.evidence_with_check(s)
        _store(store_for, ev, db, as_user)
    if json_out:
        _dump(s | ({"stored_for": store_for, "evidence_kind": ev["kind"]} if ev is not None else {}))
        return
    for line in mc.describe(s):
        out.print(line, markup=False)
    if ev is not None:
        out.print(f"deployment {store_for}: scoring model {ev['model_version']} stored for {ev['watchlist_size']} subjects at "
                  f"FPIR {ev['target_fpir']:g}, with the local check ({s['verdict']})")


@_handled
def _store(deployment: int, evidence: dict, db, as_user) -> None:
    gov, actor = _setup(db, as_user)
    dep = gov.get_deployment(actor, deployment)
    snap_n = None
    if actor.can("watchlist.read"):  # operators may not read watchlists: the check is then left out
        snap_n = sum(1 for x in gov.list_subjects(actor, dep["watchlist"]["id"]) if not x["expired"])
    if snap_n is not None and snap_n > evidence["watchlist_size"]:
        err.print(f"warning: watchlist {dep['watchlist']['name']} holds {snap_n} unexpired subjects, more than the "
                  f"{evidence['watchlist_size']} calibrated for: its FPIR will be higher than the target")
    gov.store_threshold_evidence(actor, deployment, evidence)


# -- video scenarios ----------------------------------------------------------------------------


@evaluate_app.command("video")
def video(
    source: Annotated[str, typer.Option(help="Video file (or any source openlfr run takes).", show_default=False)],
    watchlist: Annotated[Path, typer.Option(help="Watchlist folder (<subject>/<image> or flat images) or CSV.", show_default=False)],
    truth: Annotated[Path, typer.Option(help="Who appears (CSV subject[,start,end] or plain lines).", exists=True, dir_okay=False, show_default=False)],
    threshold: Annotated[Optional[float], typer.Option(help="Alert when distance < threshold (default: from --target-fpir).")] = None,
    target_fpir: Annotated[float, typer.Option(help="Target FPIR for the default threshold.")] = 0.001,
    cooldown: Annotated[Optional[float], typer.Option(help="Seconds before a subject may alert again on the camera (openlfr run's default 30).")] = None,
    tolerance: Annotated[float, typer.Option(help="Seconds of slack around each appearance in the truth file.")] = 1.0,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after N frames.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A video scenario: openlfr run's pipeline on a video, scored against a truth file (identity-level TPIR, false alerts, alerts per identity, faces seen)."""
    import logging

    from ..live.runner import RunError
    from ..transparency.video import TruthError, describe, read_truth, run_video

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    try:
        apps = read_truth(truth)
        res = run_video(source, watchlist, apps, threshold=threshold, target_fpir=target_fpir, tolerance=tolerance,
                        cooldown=cooldown, max_frames=max_frames)
    except (TruthError, RunError) as e:
        _fail(str(e))
    except ValueError as e:  # configuration (pydantic)
        _fail(str(e))
    if json_out:
        _dump(res.summary | {"alerts_scored": res.alerts})
        return
    for line in describe(res.summary):
        out.print(line, markup=False)


# -- volunteers ---------------------------------------------------------------------------------


@deployment_app.command("volunteer-passes")
@_handled
def volunteer_passes(
    deployment: Annotated[int, typer.Argument(help="Deployment id.")],
    subject: Annotated[int, typer.Argument(help="The volunteer's subject id.")],
    passes: Annotated[int, typer.Option(min=0, help="How many times they walked past the cameras.", show_default=False)],
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Record how many times a volunteer of a test deployment walked past (for the field TPIR)."""
    gov, actor = _setup(db, as_user)
    gov.record_volunteer_passes(actor, deployment, subject, passes)
    out.print(f"deployment {deployment}: volunteer {subject} walked past {passes} time(s)")
