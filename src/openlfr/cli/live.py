"""``openlfr run`` (live recognition on cameras, streams, files, folders) and ``openlfr demo``."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from . import app
from .common import Detector

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _parse_zone(zone: str | None):
    if not zone:
        return None
    try:
        v = tuple(float(x) for x in zone.split(","))
    except ValueError:
        v = ()
    if len(v) != 4:
        raise typer.BadParameter("give the zone as four fractions: left,top,right,bottom (e.g. 0,0.4,1,1)")
    return v


class _Display:
    """The live terminal display: one row per camera (progress for files), alerts as they come."""

    def __init__(self, console: Console):
        self.console = console
        self.runner = None
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.console.print(f"[bold]threshold[/] {ev['threshold']:.3f} — {ev['threshold_reason']}")
            second = (f"; second model: {ev['second_model']} ({ev.get('second_templates', 0)} of {ev.get('watchlist_templates')} "
                      "templates have its feature)" if ev.get("second_model") else "; second model: none (dlib's descriptor alone)")
            self.console.print(f"watchlist: {ev['watchlist_subjects']} subjects; detector: {ev['detector']}{second}")
        elif kind in ("alert", "alert_update"):  # with the threshold for this face and, when fused, the fused score
            how = (f" (fused score {ev['score']:.2f} < {ev['score_threshold']:.2f}, band {ev.get('band')})"
                   if ev.get("second_model") and ev.get("score") is not None and ev.get("score_threshold") is not None else "")
            if kind == "alert":
                self.console.print(
                    f"[bold red]ALERT[/] {ev['name']} on {ev['camera']} (track {ev['track']}) distance "
                    f"{ev['distance']:.3f} < threshold {ev['threshold']:.3f}{how} at {ev['time']:.2f} s, frame {ev['frame']}"
                )
            else:
                self.console.print(
                    f"[red]  update[/] alert {ev['alert']}: {ev['name']} now {ev['distance']:.3f} < threshold {ev['threshold']:.3f}"
                    f"{how} (track {ev['track']})"
                )
        elif kind == "source" and ev["state"] in ("down", "reconnecting", "reconnected", "error"):
            colour = "green" if ev["state"] == "reconnected" else "yellow"
            self.console.print(f"[{colour}]camera {ev['camera']}: {ev['state']}[/] {ev.get('message', '')}")

    def __rich__(self):
        r = self.runner
        if r is None or not r.stats:
            return Text("starting...")
        elapsed = max(time.monotonic() - (r.started or time.monotonic()), 1e-9)
        table = Table(show_edge=False, pad_edge=False)
        for col in ("camera", "state", "progress", "fps", "faces seen", "alerts", "dropped"):
            table.add_column(col)
        for st in r.stats:
            if st.total:
                prog = Progress(BarColumn(bar_width=20), TextColumn("{task.completed}/{task.total}"))
                prog.add_task("", total=st.total, completed=st.frames)
            else:
                prog = Text(f"{st.frames} frames")
            table.add_row(st.name, st.state, prog, f"{st.frames / elapsed:.1f}", str(st.faces_seen), str(st.alerts),
                          str(st.dropped))
        return Group(table)


@app.command()
def run(
    source: Annotated[list[str], typer.Option("--source", "-s", help="Video file, rtsp:// or http:// URL, webcam index, or image folder. Repeat for several cameras.", show_default=False)],
    watchlist: Annotated[Optional[Path], typer.Option(help="Watchlist: folder (<subject>/<image> or flat images) or CSV. Not with --deployment (it runs against its snapshot).", show_default=False)] = None,
    deployment: Annotated[Optional[int], typer.Option(help="Run for this authorised, active deployment: its snapshot, threshold and cameras; alerts and faces seen are stored. Without it (ad hoc) nothing is stored.", show_default=False)] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL for --deployment (else $OPENLFR_DB, else SQLite in the data directory).", show_default=False)] = None,
    server: Annotated[Optional[str], typer.Option("--server", help="With --deployment: post alerts to this openlfr serve URL (a camera worker) instead of the database; alerts wait in a disk buffer while it is away.", show_default=False)] = None,
    token: Annotated[Optional[str], typer.Option("--token", envvar="OPENLFR_WORKER_TOKEN", help="The deployment's worker token for --server ($OPENLFR_WORKER_TOKEN).", show_default=False)] = None,
    as_user: Annotated[Optional[str], typer.Option("--as", envvar="OPENLFR_USER", help="With --deployment (not --server): the operator running it ($OPENLFR_USER); password from $OPENLFR_ACTOR_PASSWORD or $OPENLFR_PASSWORD, else asked. Its alerts are recorded in their name.", show_default=False)] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Alert when distance < threshold. Default: from --target-fpir and the watchlist's size.")] = None,
    target_fpir: Annotated[float, typer.Option(help="Target false alert rate per face seen, for the default threshold.")] = 0.001,
    detector: Annotated[Detector, typer.Option(help="retina (RetinaFace: finds turned and small faces), hog (dlib's frontal HOG) or cnn (MMOD: far slower).")] = Detector.retina,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line: alerts as they happen, then a summary.")] = False,
    annotate: Annotated[Optional[Path], typer.Option(help="Write a video (first camera) with alerts boxed and named, everything else blurred.")] = None,
    zone: Annotated[Optional[str], typer.Option(help="Zone of recognition: left,top,right,bottom fractions of the frame.")] = None,
    scan_every: Annotated[int, typer.Option(help="Scan for new faces every N frames (0: twice a second).")] = 0,
    min_face: Annotated[int, typer.Option(help="Smallest face (px) to look for: small frames are enlarged for it.")] = 24,
    max_absence: Annotated[float, typer.Option(help="A track ends after this many seconds without its face.")] = 1.0,
    cooldown: Annotated[float, typer.Option(help="Seconds before a subject can alert again on the same camera.")] = 30.0,
    realtime: Annotated[Optional[bool], typer.Option("--realtime/--no-realtime", help="Read files at their frame rate, dropping frames under load (as a camera). Default: files as fast as processed.")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop each source after N frames.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log source events and timings to stderr.")] = False,
    shape: Annotated[str, typer.Option(help="auto, threads (one process) or processes (camera processes around one inference service; many cameras, GPU).")] = "auto",
    second_model: Annotated[str, typer.Option(help="The second face model fused in the score: auto (SFace when installed, with RetinaFace), sface (required) or none (dlib's descriptor alone).")] = "auto",
    detect_in: Annotated[str, typer.Option(help="With --shape processes: where RetinaFace runs: camera (each camera process), service (the inference service, batched across cameras) or auto (the service on a CUDA GPU).")] = "auto",
) -> None:
    """Live recognition: detect, track, pick best shots, search the watchlist, one alert per person."""
    from pydantic import ValidationError

    from ..live.config import RunConfig

    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (watchlist is None) == (deployment is None):
        err.print("[red]error:[/] give either --watchlist (ad hoc, nothing stored) or --deployment ID")
        raise typer.Exit(2)
    try:
        cfg = RunConfig(
            sources=source, watchlist=watchlist, annotate=annotate, realtime=realtime, max_frames=max_frames, shape=shape,
            detect_in=detect_in, second_model=second_model,
            detection={"detector": detector.value, "roi": _parse_zone(zone), "every": scan_every, "min_face_px": min_face},
            tracking={"max_absence_s": max_absence},
            alerts={"threshold": threshold, "target_fpir": target_fpir, "cooldown_s": cooldown},
        )
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(x) for x in er['loc'])}: {er['msg']}" for er in e.errors())
        err.print(f"[red]error:[/] {msgs}")
        raise typer.Exit(2)

    if server and deployment is None:
        err.print("[red]error:[/] --server needs --deployment ID")
        raise typer.Exit(2)
    runner_args = _deployment_args(deployment, db, cfg, server, token, as_user) if deployment is not None else {}
    try:
        summary = _execute(cfg, json_out, **runner_args)
    finally:
        if runner_args:  # a worker's sink delivers what its disk buffer still holds (it stays on disk for the next run otherwise)
            left = runner_args["sink"].close()
            if left:
                err.print(f"[yellow]{left} alert(s) or faces-seen count(s) wait in the disk buffer for {server}: they go with the next run[/]")
    if summary.get("signal") == "SIGINT":  # Ctrl-C: status 130 after the summary, as shells expect (SIGTERM: a clean stop, 0)
        raise typer.Exit(130)
    failed = [c for c in summary["cameras"] if c["state"] == "error"]
    if failed and len(failed) == len(summary["cameras"]):
        raise typer.Exit(1)


def _deployment_args(deployment_id: int, db: str | None, cfg, server: str | None = None, token: str | None = None,
                     as_user: str | None = None) -> dict:
    """Open the deployment's run as someone (refused unless authorised, active and in its window)
    and name the sources after its cameras: ``--source NAME=SPEC``, or the only camera for one source.

    A run is never anonymous: on the database it acts as ``--as USER`` (an operator, logged in
    and audited as every governed command); with ``--server`` as the deployment's worker token."""
    from ..live.sink import split_source_name
    from .common import governance_exit

    try:
        if server:
            from ..worker.client import open_remote_run

            if as_user:
                err.print("[yellow]note:[/] with --server the run acts as its worker token; --as is not used")
            run = open_remote_run(server, token, deployment_id)
        else:
            from ..governance.live import open_deployment_run
            from ..governance.service import Governance
            from .governance import actor_password

            if not as_user:
                err.print("[red]error:[/] who runs it? give --as USER (an operator; or set OPENLFR_USER), "
                          "or --server URL with the deployment's worker token")
                raise typer.Exit(2)
            actor = Governance(db).login(as_user, actor_password(as_user))
            run = open_deployment_run(db, deployment_id, actor=actor)
    except Exception as e:  # the governance commands' exit codes (a bad worker URL or token: 2)
        code, label = governance_exit(e) or ((2, "error") if isinstance(e, ValueError) else (None, None))
        if code is None:
            raise
        err.print(f"[red]{label}:[/] " + (f"deployment {deployment_id}: " if code == 2 else "") + str(e))
        raise typer.Exit(code) from None
    named = [split_source_name(s) for s in cfg.sources]
    if len(named) == 1 and named[0][0] is None and len(run.cameras) == 1:
        named = [(run.cameras[0], named[0][1])]
    unknown = [n or spec for n, spec in named if n not in run.cameras]
    if unknown:
        err.print(f"[red]error:[/] source(s) {', '.join(unknown)} are not cameras of deployment {deployment_id} "
                  f"({', '.join(run.cameras)}); name each source: --source CAMERA=SPEC")
        raise typer.Exit(2)
    cfg.sources = [f"{n}={spec}" for n, spec in named]
    return {"watchlist": run.watchlist(), "threshold": run.threshold, "sink": run.sink,
            "scoring_evidence": run.threshold_evidence, "reference_band": run.reference_bands()}


def _execute(cfg, json_out: bool, **runner_args) -> dict:
    """Prepare and run a LiveRunner with the JSON-lines or the Rich display; exits 2 on bad input."""
    from ..live.multiproc import make_runner
    from ..live.runner import RunError

    out = sys.stdout

    def json_event(ev: dict) -> None:
        out.write(json.dumps(ev) + "\n")
        out.flush()

    console = Console()
    display = None if json_out else _Display(console)
    runner = make_runner(cfg, on_event=json_event if json_out else display, **runner_args)
    if display is not None:
        display.runner = runner
    try:
        with err.status("opening sources and enrolling the watchlist...") if not json_out else _null():
            runner.prepare()
    except RunError as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(2)
    rep = runner.enrolment
    if rep is not None and (rep.rejected or rep.excluded_subjects):
        for path, reason in rep.rejected:
            err.print(f"[yellow]watchlist:[/] {path}: {reason}")
        if rep.excluded_subjects:
            err.print(f"[yellow]watchlist:[/] left out (no usable image): {', '.join(rep.excluded_subjects)}")
    if json_out:
        return runner.run()
    with Live(display, console=console, refresh_per_second=4, transient=False):
        summary = runner.run()
    _print_summary(console, summary)
    return summary


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _print_summary(console: Console, s: dict) -> None:
    t = Table(title="summary", show_header=False)
    t.add_column()
    t.add_column()
    for key in ("frames", "faces_seen", "too_poor_to_search", "alerts", "alert_updates", "suppressed", "dropped_frames", "fps", "elapsed_s"):
        t.add_row(key.replace("_", " "), str(s.get(key, "-")))
    if s["alerts_per_subject"]:
        t.add_row("alerts per subject", ", ".join(f"{k}: {v}" for k, v in s["alerts_per_subject"].items()))
    t.add_row("threshold", f"{s['threshold']:.3f}")
    if s.get("interrupted"):
        t.add_row("stopped", "interrupted (Ctrl-C or SIGTERM)")
    console.print(t)


@app.command()
def demo(
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines, as openlfr run --json.")] = False,
    keep: Annotated[Optional[Path], typer.Option(help="Keep the generated watchlist and video in this folder.")] = None,
    annotate: Annotated[Optional[Path], typer.Option(help="Also write the annotated video here.")] = None,
) -> None:
    """A zero-set-up scenario: a one-person watchlist and a walk-past video made from sample images
    that installed packages ship (Eileen Collins from scikit-image, Grace Hopper from matplotlib).
    Collins is on the watchlist from a differently processed photo; both walk past the camera;
    exactly one of them alerts."""
    import tempfile

    from ..live.config import RunConfig
    from ..live.demo import build_demo

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="openlfr-demo-") as tmp:
        folder = keep or Path(tmp)
        if not json_out:
            err.print("making the demo: a one-person watchlist (Eileen Collins, from a differently processed "
                      "photo) and a 4 s video of Collins and Grace Hopper walking past...")
        scenario = build_demo(folder)
        cfg = RunConfig(sources=[str(scenario.video)], watchlist=scenario.watchlist, annotate=annotate)
        summary = _execute(cfg, json_out)
    per = summary["alerts_per_subject"]
    ok = per == {scenario.expected_subject: 1}
    if not json_out:
        verdict = "[green]as expected[/]" if ok else "[red]NOT as expected[/]"
        err.print(f"expected: exactly one alert, for {scenario.expected_subject}, and none for "
                  f"{scenario.bystander}; got {per or 'no alert'}: {verdict}")
        if keep:
            err.print(f"watchlist and video kept in {keep}")
    if not ok:
        raise typer.Exit(1)
