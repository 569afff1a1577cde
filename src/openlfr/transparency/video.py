"""Video scenarios: run the live pipeline on a video against a watchlist, and score its alerts
against a truth file that lists who appears (and optionally when).

Truth file (CSV with a header, or plain lines; ``#`` starts a comment)::

    subject,start,end                 # start/end optional: seconds, mm:ss or h:mm:ss
    lin-manuel-miranda,0,11
    alex-lacamoire                    # appears, time unknown

One row per appearance (a subject walking past twice has two rows). ``subject`` is the watchlist
subject's id (its folder or file name) or its name. Watchlist subjects not in the file are
absent. People in the file who are not on the watchlist are noted and otherwise ignored.

Scored (at the threshold the run used):

- **identity-level TPIR** = watchlisted people who appear and got at least one alert for
  themselves (inside one of their appearances, with a tolerance, when times are given) /
  watchlisted people who appear;
- **appearance-level TPIR** (when times are given) = appearances with such an alert / appearances;
- **true alerts**: an alert for a subject who appears (in time, when times are given);
  **false alerts**: an alert for an absent subject, or outside every appearance of that subject;
- alerts per identity, faces seen (tracks), the false alert rate (false alerts / faces seen) and
  the alert precision (true alerts / alerts).

Only the run's events are used: nothing about a face that matched nobody is kept.
Limitation: an alert is credited to the subject it names; the truth file does not say *which*
face on screen was that person, so an alert for someone present, raised by another face in the
same seconds, counts as true.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from .rates import alert_precision, false_alert_rate, pct, wilson_interval

TOLERANCE_S = 1.0


class TruthError(ValueError):
    """A truth file that cannot be read."""


@dataclass
class Appearance:
    subject: str
    start: float | None = None
    end: float | None = None
    line: int = 0

    def contains(self, t: float, tolerance: float) -> bool:
        if self.start is None and self.end is None:
            return True
        lo = -float("inf") if self.start is None else self.start - tolerance
        hi = float("inf") if self.end is None else self.end + tolerance
        return lo <= t <= hi




def parse_time(text: str) -> float | None:
    """Seconds from ``12.5``, ``1:02.5`` or ``1:01:02``; None for an empty field."""
    t = text.strip()
    if not t:
        return None
    parts = t.split(":")
    try:
        if len(parts) > 3:
            raise ValueError
        secs = 0.0
        for p in parts:
            secs = secs * 60 + float(p)
    except ValueError:
        raise TruthError(f"{text!r} is not a time (seconds, mm:ss or h:mm:ss)") from None
    if secs < 0:
        raise TruthError(f"{text!r}: a time cannot be negative")
    return secs


def read_truth(path: str | Path) -> list[Appearance]:
    """Appearances from a truth file (see the module's docstring)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise TruthError(f"{path}: cannot read ({e})") from None
    lines = [(i, ln.split("#", 1)[0].strip()) for i, ln in enumerate(text.splitlines(), start=1)]
    lines = [(i, ln) for i, ln in lines if ln]
    if not lines:
        raise TruthError(f"{path}: lists nobody (an empty scene needs a file saying so: use a line 'none')")
    out: list[Appearance] = []
    first = lines[0][1]
    if first.split(",")[0].strip().lower() in ("subject", "identity", "name", "subject_id"):
        head = [h.strip().lower() for h in next(csv.reader([first]))]
        col = next(head.index(c) for c in ("subject", "subject_id", "identity", "name") if c in head)
        cs, ce = (head.index("start") if "start" in head else None), (head.index("end") if "end" in head else None)
        for i, ln in lines[1:]:
            row = next(csv.reader(io.StringIO(ln)))
            get = (lambda c: row[c].strip() if c is not None and c < len(row) else "")
            subj = get(col)
            if not subj:
                raise TruthError(f"{path}:{i}: no subject")
            try:
                out.append(Appearance(subj, parse_time(get(cs)), parse_time(get(ce)), i))
            except TruthError as e:
                raise TruthError(f"{path}:{i}: {e}") from None
    else:
        for i, ln in lines:
            parts = ln.replace(",", " ").split()
            if len(parts) not in (1, 3):
                raise TruthError(f"{path}:{i}: expected 'subject' or 'subject start end'")
            try:
                out.append(Appearance(parts[0], *(parse_time(p) for p in parts[1:]), line=i) if len(parts) == 3
                           else Appearance(parts[0], line=i))
            except TruthError as e:
                raise TruthError(f"{path}:{i}: {e}") from None
    out = [a for a in out if a.subject.lower() != "none"]
    for a in out:
        if a.start is not None and a.end is not None and a.end < a.start:
            raise TruthError(f"{path}:{a.line}: the end is before the start")
    return out


@dataclass
class VideoScore:
    summary: dict
    alerts: list[dict] = field(default_factory=list)


def _key(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", s.lower())


def score_alerts(
    alerts: list[dict],
    subjects: list[tuple[str, str]],
    truth: list[Appearance],
    faces_seen: int,
    tolerance: float = TOLERANCE_S,
    updates: list[dict] | None = None,
) -> VideoScore:
    """Score alert events (``subject``, ``time``) against the truth; ``subjects``: (id, name) of the watchlist.

    ``updates``: alert updates (a better shot of an alerted subject, possibly on a later track
    within the cool-down); they raise no new alert but show that an appearance was recognised.
    """
    by_key: dict[str, str] = {}
    for sid, name in subjects:
        by_key.setdefault(_key(sid), sid)
        by_key.setdefault(_key(name), sid)
    apps: dict[str, list[Appearance]] = {}
    not_listed: list[str] = []
    for a in truth:
        sid = by_key.get(_key(a.subject))
        if sid is None:
            not_listed.append(a.subject)
            continue
        apps.setdefault(sid, []).append(a)
    timed = any(a.start is not None or a.end is not None for v in apps.values() for a in v)
    scored = []
    hit_apps: set[tuple[str, int]] = set()
    for ev in alerts:
        sid, t = str(ev["subject"]), float(ev.get("time", 0.0))
        mine = apps.get(sid, [])
        inside = [i for i, a in enumerate(mine) if a.contains(t, tolerance)]
        ok = bool(inside)
        for i in inside:
            hit_apps.add((sid, i))
        scored.append({**{k: ev.get(k) for k in ("alert", "subject", "name", "camera", "track", "time", "frame", "distance")},
                       "true": ok, "why": "" if ok else ("subject absent" if not mine else "outside the subject's appearances")})
    for ev in updates or []:
        sid, t = str(ev["subject"]), float(ev.get("time", 0.0))
        for i, a in enumerate(apps.get(sid, [])):
            if a.contains(t, tolerance):
                hit_apps.add((sid, i))
    present = sorted(apps)
    alerted = sorted({s["subject"] for s in scored if s["true"]})
    n_apps = sum(len(v) for v in apps.values())
    true_n = sum(1 for s in scored if s["true"])
    false_n = len(scored) - true_n
    per_identity = {}
    for sid, name in subjects:
        mine = [s for s in scored if s["subject"] == sid]
        per_identity[sid] = {"name": name, "present": sid in apps, "appearances": len(apps.get(sid, [])),
                             "alerts": len(mine), "true_alerts": sum(1 for s in mine if s["true"]),
                             "false_alerts": sum(1 for s in mine if not s["true"])}
    w = wilson_interval(len(alerted), len(present)) if present else None
    summary = {
        "watchlist_subjects": len(subjects),
        "present": present,
        "absent": sorted(sid for sid, _ in subjects if sid not in apps),
        "not_on_watchlist": sorted(set(not_listed)),
        "identities_present": len(present),
        "identities_alerted": len(alerted),
        "tpir_identity": (len(alerted) / len(present)) if present else None,
        "tpir_identity_ci95": None if w is None else list(w),
        "appearances": n_apps if timed else None,
        "appearances_alerted": len(hit_apps) if timed else None,
        "tpir_appearance": (len(hit_apps) / n_apps) if timed and n_apps else None,
        "alerts": len(scored),
        "true_alerts": true_n,
        "false_alerts": false_n,
        "faces_seen": faces_seen,
        "false_alert_rate": false_alert_rate(false_n, faces_seen),
        "alert_precision": alert_precision(true_n, false_n),
        "alerts_per_identity": per_identity,
        "tolerance_s": tolerance,
        "timed_truth": timed,
    }
    return VideoScore(summary, scored)


def run_video(
    source: str | Path,
    watchlist: str | Path,
    truth: str | Path | list[Appearance],
    *,
    threshold: float | None = None,
    target_fpir: float = 0.001,
    tolerance: float = TOLERANCE_S,
    max_frames: int | None = None,
    cooldown: float | None = None,
    on_event=None,
    engine=None,
    config: dict | None = None,
) -> VideoScore:
    """Run ``openlfr run``'s pipeline (ad-hoc mode: nothing stored) on one video and score it."""
    from ..live.config import RunConfig
    from ..live.runner import LiveRunner

    apps = truth if isinstance(truth, list) else read_truth(truth)
    alert_cfg = {"threshold": threshold, "target_fpir": target_fpir}
    if cooldown is not None:
        alert_cfg["cooldown_s"] = cooldown
    cfg = RunConfig(sources=[str(source)], watchlist=Path(watchlist), max_frames=max_frames, alerts=alert_cfg,
                    **(config or {}))
    events: list[dict] = []

    def sink(ev: dict) -> None:
        events.append(ev)
        if on_event is not None:
            on_event(ev)

    runner = LiveRunner(cfg, on_event=sink, engine=engine)
    runner.prepare()
    summary = runner.run()
    subjects = [(s.id, s.name) for s in runner.watchlist.subjects]
    alerts = [e for e in events if e.get("event") == "alert"]
    updates = [e for e in events if e.get("event") == "alert_update"]
    res = score_alerts(alerts, subjects, apps, int(summary["faces_seen"]), tolerance, updates)
    res.summary |= {
        "source": str(source),
        "watchlist": str(watchlist),
        "threshold": summary["threshold"],
        "threshold_reason": summary["threshold_reason"],
        "frames": summary["frames"],
        "dropped_frames": summary["dropped_frames"],
        "elapsed_s": summary["elapsed_s"],
        "alert_updates": summary["alert_updates"],
        "suppressed": summary["suppressed"],
        "cooldown_s": cfg.alerts.cooldown_s,
    }
    if runner.enrolment is not None and runner.enrolment.excluded_subjects:
        res.summary["watchlist_left_out"] = list(runner.enrolment.excluded_subjects)
    return res


def describe(s: dict) -> list[str]:
    lines = [
        f"video {s.get('source', '')}: {s.get('frames', '?')} frames; threshold {s.get('threshold', 0):.3f}",
        f"faces seen (tracks): {s['faces_seen']}",
        f"watchlisted people present: {s['identities_present']} ({', '.join(s['present']) or 'none'}); "
        f"absent: {', '.join(s['absent']) or 'none'}",
        "identity-level TPIR: " + ("-" if s["tpir_identity"] is None else
                                   f"{pct(s['tpir_identity'], 3)} ({s['identities_alerted']} of {s['identities_present']})"),
    ]
    if s["tpir_appearance"] is not None:
        lines.append(f"appearance-level TPIR: {pct(s['tpir_appearance'], 3)} ({s['appearances_alerted']} of {s['appearances']})")
    lines.append(f"alerts: {s['alerts']} (true {s['true_alerts']}, false {s['false_alerts']})")
    lines.append("false alert rate (false alerts / faces seen): " + pct(s["false_alert_rate"], 3)
                 + "; alert precision (true alerts / alerts): " + pct(s["alert_precision"], 3))
    lines.append("alerts per identity:")
    for sid, v in s["alerts_per_identity"].items():
        lines.append(f"  {sid} ({'present' if v['present'] else 'absent'}): {v['alerts']} alert(s), "
                     f"{v['true_alerts']} true, {v['false_alerts']} false")
    if s["not_on_watchlist"]:
        lines.append(f"in the truth file but not on the watchlist (ignored): {', '.join(s['not_on_watchlist'])}")
    return lines
