"""The deployment report: what a regulator, a court or the public should be able to read.

``collect(gov, actor, deployment_id)`` gathers one deployment's figures through the governance
services (the actor needs to read deployments and the audit log: an auditor or an
administrator) and ``render_text`` / ``render_html`` / ``render_pdf`` present them:

- when, where, why, who planned and who authorised it (DPIA, signage, notices);
- the watchlist snapshot: subjects, templates, categories, volunteers;
- the threshold and how it was chosen (a stored calibration, or the packaged impostor table);
- cameras and faces seen;
- alerts as true / false x confirmed / unconfirmed, the outcomes, the time to adjudication;
- the **false alert rate** (false alerts / faces seen) and the **alert precision** (true alerts /
  adjudicated alerts) side by side, with 95% Wilson intervals, and why they differ (base rates);
- volunteers of a test deployment apart: their true alerts give the field TPIR and never count
  as operational alerts or outcomes; a false alert against a volunteer still wrongly flagged a
  passer-by and counts in the false alert rate;
- what was deleted and when (the snapshot, alerts past retention, erased subjects).

The alert figures come from the hash-chained audit log (verified first), which keeps that each
alert, adjudication and outcome happened after the alert records themselves are purged; they
are checked against the records still held.
"""

from __future__ import annotations

import json
import statistics
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .rates import (
    alert_precision,
    expected_alerts,
    explain,
    explain_observed,
    false_alert_rate,
    num,
    one_in,
    pct,
    wilson_interval,
)

RESULTS = ("confirmed", "unconfirmed")
OUTCOMES = ("arrest", "other_action", "no_further_action", "no_engagement")


def _t(iso: str | None) -> datetime | None:
    if not iso:
        return None
    s = iso.replace("Z", "+00:00")
    t = datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def when(iso: str | None) -> str:
    t = _t(iso)
    return "-" if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


@dataclass
class Report:
    data: dict
    _charts: dict | None = None

    def to_json(self) -> dict:
        return self.data

    def charts(self) -> dict[str, bytes]:
        """The PNG charts, drawn once."""
        if self._charts is None:
            self._charts = charts(self)
        return self._charts


def _ci(k: int, n: int) -> list[float] | None:
    w = wilson_interval(k, n)
    return None if w is None else [w[0], w[1]]


def collect(gov, actor, deployment_id: int) -> Report:
    """The report's figures for one deployment (see the module's docstring)."""
    d = gov.get_deployment(actor, deployment_id)
    hist = gov.deployment_history(actor, deployment_id)
    events = hist["events"]
    snap = d.get("snapshot") or {}
    comp = snap.get("composition") or {}
    volunteers = set(comp.get("volunteers") or [])
    volunteers |= {sid for sid, f in hist["subjects"].items() if f["volunteer"]}

    alerts: dict[str, dict] = {}
    purges, erasures, snapshot_events, passes = [], {}, [], {}
    for ev in events:
        a, det, tgt = ev["action"], ev["details"], ev["target"]
        if a == "alert.create":
            alerts[tgt] = {"id": int(tgt.split(":")[1]), "created": ev["time"], "subject_id": det.get("subject_id"),
                           "camera": det.get("camera"), "distance": det.get("distance"), "decision": None,
                           "decided": None, "first_decided": None, "result": None, "outcome": None, "updates": 0,
                           # how it was raised: with a score (the scoring model's), fused with a second model's
                           "scored": det.get("score") is not None, "second_model": det.get("second_model")}
        elif a == "alert.update" and tgt in alerts:
            alerts[tgt]["updates"] += 1
        elif a == "alert.adjudicate" and tgt in alerts:
            al = alerts[tgt]
            al["decision"], al["decided"] = det.get("decision"), ev["time"]
            al["first_decided"] = al["first_decided"] or ev["time"]
        elif a == "alert.outcome" and tgt in alerts:
            alerts[tgt]["result"], alerts[tgt]["outcome"] = det.get("result"), det.get("outcome")
        elif a == "purge" and det.get("alerts"):
            purges.append(ev)
        elif a == "subject.erase":
            erasures[int(tgt.split(":")[1])] = ev
        elif a in ("snapshot.create", "snapshot.delete"):
            snapshot_events.append(ev)
        elif a == "volunteer.passes":
            passes[int(det["subject_id"])] = int(det["passes"])

    # What was deleted, and when.
    deletions = []
    for ev in snapshot_events:
        if ev["action"] == "snapshot.delete":
            deletions.append({"what": f"watchlist snapshot ({snap.get('subjects', '?')} subjects, "
                                      f"{snap.get('templates', '?')} templates)",
                              "when": ev["time"], "why": ev["details"].get("reason", "")})
    gone_by_purge: dict[str, list[str]] = {}
    gone_by_erasure: dict[str, list[str]] = {}
    for key, al in alerts.items():
        er = erasures.get(al["subject_id"])
        if er is not None and er["time"] >= al["created"]:
            al["deleted"] = er["time"]
            gone_by_erasure.setdefault(er["time"], []).append(key)
            continue
        for p in purges:
            cutoff = p["details"].get("cutoff")
            if cutoff and p["time"] >= al["created"] and _t(cutoff) > _t(al["created"]):
                al["deleted"] = p["time"]
                gone_by_purge.setdefault(p["time"], []).append(key)
                break
    for t, keys in sorted(gone_by_purge.items()):
        deletions.append({"what": f"{len(keys)} alert(s) with their crops, templates, adjudications and outcomes",
                          "when": t, "why": "retention period over (automatic purge)"})
    for t, keys in sorted(gone_by_erasure.items()):
        deletions.append({"what": f"{len(keys)} alert(s) of an erased subject", "when": t,
                          "why": "subject erased from the watchlist"})
    deletions.sort(key=lambda x: x["when"])

    # Alert figures: operational (not volunteers) and volunteers apart.
    def split(vol: bool) -> list[dict]:
        return [a for a in alerts.values() if (a["subject_id"] in volunteers) == vol]

    op, vo = split(False), split(True)
    table = {dec: {r: 0 for r in (*RESULTS, "not_recorded")} for dec in ("true_alert", "false_alert", "unadjudicated")}
    outcomes = {o: 0 for o in OUTCOMES}
    for a in op:
        dec = a["decision"] or "unadjudicated"
        table[dec][a["result"] or "not_recorded"] += 1
        if a["outcome"]:
            outcomes[a["outcome"]] += 1
    op_true = sum(1 for a in op if a["decision"] == "true_alert")
    op_false = sum(1 for a in op if a["decision"] == "false_alert")
    vo_true = sum(1 for a in vo if a["decision"] == "true_alert")
    vo_false = sum(1 for a in vo if a["decision"] == "false_alert")
    faces = int(d["faces_seen"]["total"])
    all_false = op_false + vo_false
    n_passes = sum(passes.values()) if passes else int((d.get("volunteers") or {}).get("passes") or 0)
    field_hits = min(vo_true, n_passes)
    per_volunteer = []
    for sid in sorted(volunteers | set(passes)):
        t_ = sum(1 for a in vo if a["subject_id"] == sid and a["decision"] == "true_alert")
        per_volunteer.append({"subject_id": sid, "passes": passes.get(sid), "true_alerts": t_,
                              "alerts": sum(1 for a in vo if a["subject_id"] == sid)})

    delays = []
    for a in alerts.values():
        if a["first_decided"]:
            delays.append((_t(a["first_decided"]) - _t(a["created"])).total_seconds())
    delays.sort()
    adjud = {"adjudicated": len(delays), "of": len(alerts)}
    if delays:
        adjud |= {"median_s": statistics.median(delays), "mean_s": statistics.fmean(delays), "max_s": delays[-1],
                  "min_s": delays[0], "p90_s": delays[min(len(delays) - 1, int(0.9 * len(delays)))],
                  "seconds": delays}

    figures = {
        "faces_seen": faces,
        "false_alerts": all_false,
        "false_alerts_against_volunteers": vo_false,
        "false_alert_rate": false_alert_rate(all_false, faces),
        "false_alert_rate_ci95": _ci(all_false, faces) if faces else None,
        "true_alerts": op_true,
        "operational_false_alerts": op_false,
        "alert_precision": alert_precision(op_true, op_false),
        "alert_precision_ci95": _ci(op_true, op_true + op_false) if (op_true + op_false) else None,
        "field_tpir": (field_hits / n_passes) if n_passes else None,
        "field_tpir_ci95": _ci(field_hits, n_passes) if n_passes else None,
    }

    # The threshold and how it was chosen.
    n_subj = int(snap.get("subjects") or 0)
    operational_subjects = n_subj - len(comp.get("volunteers") or [])
    ev = d.get("threshold_evidence")
    thr = {"value": d["threshold"], "evidence": ev}
    exp_fpir, exp_tpir, basis = None, None, ""
    if ev and ev.get("kind") in ("openlfr scoring model", "manual threshold"):
        from ..governance.thresholds import expected_line

        exp_fpir = ev.get("expected_fpir")
        if ev["kind"] == "manual threshold":
            from ..watchlist.threshold import fpir as table_fpir

            n_for = max(n_subj, 1) if n_subj else int(ev.get("watchlist_size") or 1)
            exp_fpir = float(table_fpir(d["threshold"], n_for))
            thr["how"] = (f"set by hand when the deployment was planned, because: {ev.get('reason')}. By the packaged LFW "
                          f"impostor table a face that is not on a {n_for}-subject watchlist alerts at this threshold with "
                          f"probability {pct(exp_fpir, 3)} ({one_in(exp_fpir)}), against a target of {pct(float(ev['target_fpir']), 3)}")
        else:
            thr["how"] = f"{ev.get('reason')}. {expected_line(ev)}."
        thr["expected_line"] = expected_line({**ev, "expected_fpir": exp_fpir})
        basis = "the scoring model's calibration" if ev["kind"] == "openlfr scoring model" else "the packaged LFW impostor table"
        if ev["kind"] == "openlfr scoring model":
            thr["bands"] = ev.get("bands")
            thr["second_model"] = ev.get("second_model")
            lc = ev.get("local_check")
            if isinstance(lc, dict) and ev.get("local_check_line"):  # openlfr calibrate --scoring-model
                thr["local_check"] = ev["local_check_line"] + (f", on {lc.get('images')}" if lc.get("images") else "")
                if lc.get("verdict") == "exceeds":
                    thr["warning"] = ("the local check measured a false alert rate above the target at the packaged "
                                      "thresholds: " + str(lc.get("summary") or ev["local_check_line"]))
        elif exp_fpir is not None and exp_fpir > float(ev.get("target_fpir") or 1):
            thr["warning"] = (f"the manual threshold implies a false alert rate of {pct(exp_fpir, 3)} per face seen, "
                              f"{exp_fpir / float(ev['target_fpir']):.1f} times the target {pct(float(ev['target_fpir']), 3)}")
        if n_subj and int(ev.get("watchlist_size") or 0) < n_subj:
            thr["warning"] = (thr.get("warning", "") + "; " if thr.get("warning") else "") + (
                f"planned for {ev.get('watchlist_size')} subjects but the snapshot held {n_subj}")
    elif ev:
        exp_fpir = ev.get("fpir_direct_at_threshold")
        if exp_fpir is None:
            exp_fpir = ev.get("fpir_independent_at_threshold")
        exp_tpir = ev.get("tpir")
        ci = ev.get("tpir_ci95")
        data_text = (f" on {ev['identities']} identities ({ev.get('images_used', '?')} images) from {ev.get('images') or 'a held-out set'}"
                     if ev.get("identities") else "")
        thr["how"] = (
            f"calibrated{data_text}: the largest distance at which a face that is not on a "
            f"{ev.get('watchlist_size')}-subject watchlist alerts with probability <= {float(ev.get('target_fpir')):g}"
            + (f" (from the {ev['threshold_from']})" if ev.get("threshold_from") else "")
            + f"; expected TPIR there {pct(exp_tpir, 3)}"
            + (f" (95% CI {pct(ci[0], 3)} to {pct(ci[1], 3)})" if ci else "")
            + f"; expected FPIR {pct(exp_fpir, 3)}."
            + (f" Calibrated {when(ev['created_at'])}." if ev.get("created_at") else "")
        )
        basis = "the stored calibration"
        if n_subj and int(ev.get("watchlist_size") or 0) < n_subj:
            thr["warning"] = (f"calibrated for {ev.get('watchlist_size')} subjects but the snapshot held {n_subj}: "
                              "with more subjects a stranger has more chances to alert, so the FPIR is higher than calibrated")
    else:
        try:
            from ..watchlist.threshold import fpir as table_fpir

            exp_fpir = float(table_fpir(d["threshold"], max(n_subj, 1)))
            basis = "the packaged LFW impostor table"
            thr["how"] = (f"set when the deployment was planned (no calibration stored); by the packaged LFW impostor "
                          f"table a face that is not on a {max(n_subj, 1)}-subject watchlist alerts at this threshold "
                          f"with probability {pct(exp_fpir, 3)} ({one_in(exp_fpir)})")
        except Exception as e:  # noqa: BLE001
            thr["how"] = f"set when the deployment was planned (no calibration stored; expected FPIR unknown: {e})"
    thr["expected_fpir"], thr["expected_tpir"], thr["basis"] = exp_fpir, exp_tpir, basis
    if exp_tpir is None and figures["field_tpir"] is not None:
        exp_tpir = figures["field_tpir"]
        thr["tpir_basis"] = "field TPIR measured with volunteers"

    # Base rates for this deployment's own figures.
    base = None
    if exp_fpir is not None and faces:
        k_est = min(op_true / exp_tpir, faces) if exp_tpir else 0.0
        br = expected_alerts(faces, k_est, exp_tpir or 0.0, exp_fpir)
        base = {
            "assumptions": {"faces": faces, "watchlisted_passers_estimated": k_est, "tpir": exp_tpir, "fpir": exp_fpir,
                            "fpir_from": basis},
            "expected": br.to_json(),
            "observed": {"true_alerts": op_true, "false_alerts": all_false},
            "explanation": explain(br) if exp_tpir else None,
        }

    # Records still held against what the audit says happened.
    notes = []
    held = d["alerts"]["total"] + (d.get("volunteers") or {}).get("alerts", 0)
    present = sum(1 for a in alerts.values() if "deleted" not in a)
    if held != present:
        notes.append(f"the database holds {held} alert record(s) for this deployment but the audit log accounts for "
                     f"{present}: the records and the log disagree and should be investigated")
    if not hist["audit"]["ok"]:
        notes.append(f"THE AUDIT CHAIN IS BROKEN at entry {hist['audit']['first_broken']}: {hist['audit']['reason']}; "
                     "the figures below come from a log that has been tampered with")
    if sum(1 for a in alerts.values() if "deleted" in a):
        notes.append("alert records past the retention period have been deleted; their figures come from the audit "
                     "log, which keeps that each alert, adjudication and outcome happened (not the images)")
    if vo or n_passes:
        notes.append("volunteers of a test deployment are reported apart: their true alerts measure TPIR in the field and "
                     "are not operational alerts; a false alert against a volunteer's image still wrongly flagged a "
                     "passer-by and counts in the false alert rate")

    data = {
        "kind": "openlfr deployment report",
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generated_by": actor.name,
        "deployment": {k: d.get(k) for k in ("id", "name", "status", "use_case", "location", "zone", "starts_at",
                                             "ends_at", "started_at", "ended_at", "end_reason", "dpia_ref",
                                             "signage_confirmed", "notices_confirmed", "planned_by", "planned_at",
                                             "authorising_officer", "authorisations", "cameras")},
        "watchlist": {"name": d["watchlist"]["name"], "id": d["watchlist"]["id"], "subjects": n_subj,
                      "operational_subjects": operational_subjects, "templates": snap.get("templates"),
                      "categories": comp.get("categories") or {}, "volunteers": len(comp.get("volunteers") or [])},
        "threshold": thr,
        "cameras": [{"name": c, "faces_seen": int(d["faces_seen"]["by_camera"].get(c, 0))} for c in d["cameras"]],
        "too_poor_to_search": d["faces_seen"].get("too_poor_to_search"),
        "alerts": {
            "operational": {"total": len(op), "true_alerts": op_true, "false_alerts": op_false,
                            "unadjudicated": sum(1 for a in op if not a["decision"])},
            "table": table,
            "volunteers": {"total": len(vo), "true_alerts": vo_true, "false_alerts": vo_false,
                           "unadjudicated": sum(1 for a in vo if not a["decision"]), "passes": n_passes,
                           "per_volunteer": per_volunteer},
            "by_camera": {c: sum(1 for a in op if a["camera"] == c) for c in d["cameras"]},
            # how every alert (operational and volunteers') was decided when raised, from its audit entry:
            # fused with a second model's score, on dlib's score alone, or not recorded (a fixed
            # threshold, an alert stored before the decision was kept, or sent by an older camera worker)
            "decided_with": {"fused": sum(1 for a in alerts.values() if a["second_model"]),
                             "second_models": sorted({a["second_model"] for a in alerts.values() if a["second_model"]}),
                             "dlib_score": sum(1 for a in alerts.values() if a["scored"] and not a["second_model"]),
                             "not_recorded": sum(1 for a in alerts.values() if not a["scored"] and not a["second_model"]),
                             "of": len(alerts)},
            # when each operational alert was raised and how it was adjudicated (no subject): the timeline chart
            "timeline": sorted(({"created": a["created"], "decision": a["decision"]} for a in op), key=lambda x: x["created"]),
        },
        "outcomes": outcomes,
        "figures": figures,
        "base_rates": base,
        "observed_explanation": explain_observed(faces, op_true, op_false, vo_false),
        "adjudication": adjud,
        "deletions": deletions,
        "snapshot": {k: snap.get(k) for k in ("created_at", "delete_by", "deleted_at")} if snap else None,
        "audit": hist["audit"],
        "notes": notes,
    }
    return Report(data)


# --------------------------------------------------------------------------- text


def _band_line(head: str, e: dict) -> str:
    """One quality band's expected FPIR and FNIR (``ScoringModel.expected``), with their intervals;
    a band held to a better band's stricter threshold says so."""
    fi, ni = e.get("fpir_ci95"), e.get("fnir_ci95")
    tight = e.get("tightened")
    return (f"  {head}: FPIR {'at most ' if tight else ''}{pct(e.get('fpir'), 3)}"
            + (f" ({pct(fi[0], 3)} to {pct(fi[1], 3)})" if fi else "")
            + (f", FNIR {'at least ' if tight else ''}{pct(e.get('fnir'), 3)}"
               + (f" ({pct(ni[0], 3)} to {pct(ni[1], 3)})" if ni else "") if e.get("fnir") is not None else "")
            + ("; held to a better band's stricter threshold" if tight else "")
            + f"; measured at {e.get('at_size')} subjects")


def sections(r: Report) -> list[tuple[str, list[str]]]:
    """The report as (heading, lines) sections: the console, the PDF and the tests read these."""
    d = r.data
    dep, wl, thr, fig, al = d["deployment"], d["watchlist"], d["threshold"], d["figures"], d["alerts"]
    out: list[tuple[str, list[str]]] = []
    out.append((f"Deployment {dep['id']}: {dep['name']}", [
        f"Status: {dep['status']}" + (f" ({dep['end_reason']})" if dep.get("end_reason") else ""),
        f"Why (use case): {dep['use_case']}",
        f"Where: {dep['location']}; zone of recognition: {dep['zone']}",
        f"When (planned): {when(dep['starts_at'])} to {when(dep['ends_at'])}",
        f"When (ran): {when(dep['started_at'])} to {when(dep['ended_at'])}",
        f"Planned by: {dep['planned_by'] or '-'} at {when(dep['planned_at'])}",
        "Authorised by: " + ("; ".join(f"{a['officer']} at {when(a['decided_at'])}" + (f" ({a['note']})" if a.get("note") else "")
                                       for a in dep["authorisations"]) or "not authorised"),
        f"DPIA: {dep['dpia_ref'] or '-'}; signage confirmed: {'yes' if dep['signage_confirmed'] else 'no'}; "
        f"notices confirmed: {'yes' if dep['notices_confirmed'] else 'no'}",
    ]))
    cats = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in wl["categories"].items()) or "-"
    out.append(("Watchlist", [
        f"{wl['name']}: {wl['subjects']} subjects in the deployment's snapshot ({wl['templates']} templates)"
        + (f", of whom {wl['volunteers']} volunteer(s) of the test" if wl["volunteers"] else ""),
        f"Categories: {cats}",
    ]))
    lines = [f"Threshold: {thr['value']:.4f} (alert when the descriptor distance is below it)", f"How it was chosen: {thr['how']}"]
    if thr.get("warning"):
        lines.append(f"Warning: {thr['warning']}")
    if thr.get("local_check"):
        lines.append(f"Local check: {thr['local_check']}")
    if thr.get("bands"):
        lines.append("Per probe quality band, as calibrated on degraded LFW dev probes (FNIR: a watchlisted face missed; "
                     "FPIR: a face not on the watchlist alerts; 95% intervals):")
        for b in thr["bands"]:
            lines.append(_band_line(f"band {b['name']} ({b.get('label') or ''})", b.get("expected") or {}))
        sm = thr.get("second_model")
        if sm:
            name = str(sm.get("name", "")).upper()
            lines.append(f"Where the face and the subject's reference both have {name}'s feature (a second, independent model; "
                         f"faces found by RetinaFace), the score fuses the two models ({name}'s weight {sm.get('weight')}), "
                         "calibrated the same way:")
            for bn, e in (sm.get("expected") or {}).items():
                lines.append(_band_line(f"band {bn}", e))
        lines.append("Faces below the last band are not searched (too poor to search).")
    out.append(("Threshold", lines))
    out.append(("Cameras and faces seen", [f"{c['name']}: {num(c['faces_seen'])} faces seen" for c in d["cameras"]]
                + [f"Total faces seen: {num(fig['faces_seen'])}"]
                + ([f"Of which too poor to search (below the lowest quality band, never compared with the watchlist): "
                    f"{num(d['too_poor_to_search'])}"] if d.get("too_poor_to_search") is not None else [])))
    op, tab = al["operational"], al["table"]
    lines = [
        f"Alerts: {op['total']} (true {op['true_alerts']}, false {op['false_alerts']}, not adjudicated {op['unadjudicated']})",
        "Adjudication x engagement (confirmed / unconfirmed / not recorded):",
    ]
    for dec, label in (("true_alert", "true alerts"), ("false_alert", "false alerts"), ("unadjudicated", "not adjudicated")):
        row = tab[dec]
        lines.append(f"  {label}: {row['confirmed']} / {row['unconfirmed']} / {row['not_recorded']}")
    lines.append("Outcomes: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in d["outcomes"].items()))
    dw = al.get("decided_with")
    if dw and dw["of"]:
        from ..governance.common import model_label

        names = " and ".join(model_label(n) for n in dw["second_models"]) or "a second model"
        lines.append(f"Decided with the fused score (dlib's and {names}'s, where the face and the subject's reference both "
                     f"had its feature): {dw['fused']} of {dw['of']} alerts; on dlib's score alone: {dw['dlib_score']}"
                     + (f"; how it was decided not recorded (a fixed threshold, or an older record): {dw['not_recorded']}"
                        if dw["not_recorded"] else ""))
    adj = d["adjudication"]
    if adj.get("adjudicated"):
        lines.append(f"Time to adjudication: median {duration(adj['median_s'])}, 90% within {duration(adj['p90_s'])}, "
                     f"longest {duration(adj['max_s'])} ({adj['adjudicated']} of {adj['of']} alerts adjudicated)")
    else:
        lines.append(f"Time to adjudication: no alert adjudicated ({adj['of']} alerts)")
    out.append(("Alerts and outcomes", lines))

    fr, fc = fig["false_alert_rate"], fig["false_alert_rate_ci95"]
    ap, ac = fig["alert_precision"], fig["alert_precision_ci95"]
    from .figures import MIN_FACES

    lines = [
        "False alert rate (false alerts / faces seen): "
        + ("-" if fr is None else f"{pct(fr, 3)} = {fig['false_alerts']} / {num(fig['faces_seen'])}"
           + (f" (95% CI {pct(fc[0], 3)} to {pct(fc[1], 3)})" if fc else "")
           + (f"; too few faces seen for a dependable rate (fewer than {num(MIN_FACES)})" if fig["faces_seen"] < MIN_FACES else "")),
        "Alert precision (true alerts / adjudicated alerts): "
        + ("-" if ap is None else f"{pct(ap, 3)} = {fig['true_alerts']} / {fig['true_alerts'] + fig['operational_false_alerts']}"
           + (f" (95% CI {pct(ac[0], 3)} to {pct(ac[1], 3)})" if ac else "")),
    ]
    if fig["false_alerts_against_volunteers"]:
        lines.append(f"(The false alerts include {fig['false_alerts_against_volunteers']} against volunteers' images.)")
    lines += d["observed_explanation"].splitlines()
    out.append(("False alert rate and alert precision", lines))

    b = d.get("base_rates")
    if b:
        a, e = b["assumptions"], b["expected"]
        lines = [
            f"With FPIR {pct(a['fpir'], 3)} ({a['fpir_from']}) over {num(a['faces'])} faces seen, about "
            f"{num(e['expected_false_alerts'])} false alerts were to be expected; {b['observed']['false_alerts']} occurred.",
        ]
        if a["tpir"]:
            lines.append(f"With TPIR {pct(a['tpir'], 3)}, the {b['observed']['true_alerts']} true alert(s) suggest about "
                         f"{num(a['watchlisted_passers_estimated'])} watchlisted passer(s); the expected alert precision is then "
                         f"{pct(e['alert_precision'], 3)}.")
            lines += (b["explanation"] or "").splitlines()
        out.append(("Base rates: why the two figures differ", lines))

    vo = al["volunteers"]
    if vo["total"] or vo["passes"]:
        ft, fci = fig["field_tpir"], fig["field_tpir_ci95"]
        lines = [
            f"Volunteer alerts (kept out of the figures above): {vo['total']} (true {vo['true_alerts']}, false "
            f"{vo['false_alerts']}, not adjudicated {vo['unadjudicated']}); volunteer passes recorded: {vo['passes']}",
            "Field TPIR (volunteer passes that alerted / passes): "
            + ("- (no passes recorded)" if ft is None else f"{pct(ft, 3)}" + (f" (95% CI {pct(fci[0], 3)} to {pct(fci[1], 3)})" if fci else "")),
        ]
        for v in vo["per_volunteer"]:
            lines.append(f"  volunteer subject {v['subject_id']}: {v['passes'] if v['passes'] is not None else '?'} passes, "
                         f"{v['true_alerts']} true alert(s)")
        out.append(("Test with volunteers", lines))

    lines = [f"{when(x['when'])}: {x['what']} - {x['why']}" for x in d["deletions"]] or ["Nothing deleted yet."]
    sn = d.get("snapshot")
    if sn and not sn.get("deleted_at"):
        lines.append(f"The watchlist snapshot is held until the deployment ends (by {when(sn.get('delete_by'))}).")
    out.append(("What was deleted and when", lines))
    au = d["audit"]
    out.append(("Audit", [
        f"Audit chain: {'intact' if au['ok'] else 'BROKEN at entry ' + str(au['first_broken']) + ': ' + au['reason']} "
        f"({au['entries']} entries verified)",
        f"Report generated {when(d['generated_at'])} by {d['generated_by']}.",
    ] + [f"Note: {n}" for n in d["notes"]]))
    return out


def render_text(r: Report) -> str:
    parts = []
    for head, lines in sections(r):
        parts.append(head)
        parts.append("-" * len(head))
        parts += lines
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------- charts


def charts(r: Report, fmt: str = "png") -> dict[str, bytes]:
    """Charts (PNG, or SVG with ``fmt="svg"``): alerts and the two figures with their intervals,
    alerts over time, faces seen per camera, time to adjudication, the calibration curve. Count
    axes have whole-number ticks."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from .charts import figure_bytes, pyplot

    def figure_png(f, plt):
        return figure_bytes(f, plt, fmt)

    d = r.data
    plt = pyplot()
    out: dict[str, bytes] = {}

    al, fig = d["alerts"], d["figures"]
    f, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    labels = ["true", "false", "not adj."]
    op = al["operational"]
    a1.bar(labels, [op["true_alerts"], op["false_alerts"], op["unadjudicated"]], color=["C2", "C3", "C7"])
    vo = al["volunteers"]
    if vo["total"]:
        a1.bar(["vol. true", "vol. false"], [vo["true_alerts"], vo["false_alerts"]], color=["C0", "C1"])
    a1.set_title("alerts by adjudication", fontsize=10)
    a1.set_ylabel("alerts")
    a1.yaxis.set_major_locator(MaxNLocator(integer=True))
    vals = [fig["false_alert_rate"], fig["alert_precision"]]
    cis = [fig["false_alert_rate_ci95"], fig["alert_precision_ci95"]]
    names = ["false alert rate\n(false / faces seen)", "alert precision\n(true / alerts)"]
    for i, (v, ci) in enumerate(zip(vals, cis)):
        if v is None:
            a2.annotate("no data", (i, 0.02), ha="center", fontsize=8)
            continue
        a2.bar([i], [v], color=["C3", "C2"][i])
        if ci:
            a2.errorbar([i], [v], yerr=[[v - ci[0]], [ci[1] - v]], color="k", capsize=4, lw=1)
        a2.annotate(pct(v, 3), (i, v), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=9)
    a2.set_xticks([0, 1])
    a2.set_xticklabels(names, fontsize=8)
    a2.set_ylim(0, 1.05)
    a2.set_title("the two published figures (95% CI)", fontsize=10)
    f.tight_layout()
    out["alerts"] = figure_png(f, plt)

    f, ax = plt.subplots(figsize=(6, 3), dpi=110)
    cams = d["cameras"]
    ax.bar([c["name"] for c in cams], [c["faces_seen"] for c in cams], color="C0")
    ax.set_ylabel("faces seen")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("faces seen per camera (tracks)", fontsize=10)
    f.tight_layout()
    out["faces"] = figure_png(f, plt)

    tl = al.get("timeline") or []
    if tl:
        import matplotlib.dates as mdates

        times = [_t(x["created"]) for x in tl]
        dep = d["deployment"]
        t0 = _t(dep.get("started_at")) or min(times)
        t1 = max(_t(dep.get("ended_at")) or max(times), max(times))
        span = max((t1 - t0).total_seconds(), 60.0)
        n_bins = int(min(24, max(4, span // 900)))
        edges = [t0 + (t1 - t0) * i / n_bins for i in range(n_bins + 1)] if t1 > t0 else [t0, t0]
        f, ax = plt.subplots(figsize=(6, 3), dpi=110)
        bottom = np.zeros(max(len(edges) - 1, 1))
        for dec, colour, name in (("true_alert", "C2", "true"), ("false_alert", "C3", "false"), (None, "C7", "not adjudicated")):
            sel = [t for t, x in zip(times, tl) if x["decision"] == dec]
            counts = np.histogram([mdates.date2num(t) for t in sel], bins=[mdates.date2num(e) for e in edges])[0] \
                if len(edges) > 1 else np.array([len(sel)])
            if counts.sum():
                ax.bar([mdates.date2num(e) for e in edges[:-1]], counts, width=np.diff([mdates.date2num(e) for e in edges]),
                       bottom=bottom, align="edge", color=colour, label=name, edgecolor="white", linewidth=0.5)
                bottom = bottom + counts
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("alerts")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("alerts over time", fontsize=10)
        ax.legend(fontsize=7)
        f.tight_layout()
        out["timeline"] = figure_png(f, plt)

    adj = d["adjudication"]
    if adj.get("seconds"):
        f, ax = plt.subplots(figsize=(6, 3), dpi=110)
        mins = np.array(adj["seconds"]) / 60
        ax.hist(mins, bins=min(20, max(3, len(mins))), color="C4")
        ax.axvline(adj["median_s"] / 60, color="k", ls="--", lw=1, label=f"median {duration(adj['median_s'])}")
        ax.set_xlabel("minutes from alert to adjudication")
        ax.set_ylabel("alerts")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("time to adjudication", fontsize=10)
        ax.legend(fontsize=8)
        f.tight_layout()
        out["adjudication"] = figure_png(f, plt)

    ev = d["threshold"].get("evidence")
    if ev and ev.get("curve"):
        c = ev["curve"]
        f, ax = plt.subplots(figsize=(6, 3.4), dpi=110)
        floor = 1e-5
        ax.plot(c["thresholds"], np.maximum(c["fpir_independent"], floor), color="C3", label="FPIR (independence)")
        if c.get("fpir_direct"):
            ax.plot(c["thresholds"], np.maximum(c["fpir_direct"], floor), color="C1", ls="-.", label="FPIR (direct)")
        ax.plot(c["thresholds"], np.maximum(c["tpir"], floor), color="C0", label="TPIR")
        ax.axvline(d["threshold"]["value"], color="k", ls="--", lw=1, label=f"threshold {d['threshold']['value']:.3f}")
        ax.axhline(ev["target_fpir"], color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(floor, 1.1)
        ax.set_xlabel("threshold")
        ax.set_title(f"calibration: {ev['watchlist_size']} subjects, target FPIR {ev['target_fpir']:g}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        f.tight_layout()
        out["calibration"] = figure_png(f, plt)
    return out


CHART_TITLES = {
    "alerts": "Alerts, false alert rate and alert precision",
    "timeline": "Alerts over time",
    "faces": "Faces seen per camera",
    "adjudication": "Time to adjudication",
    "calibration": "Threshold calibration",
}


# --------------------------------------------------------------------------- HTML and PDF


def render_html(r: Report) -> str:
    """A self-contained HTML page (Jinja2 template shipped in the package; charts as base64 PNG)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from .charts import data_uri

    env = Environment(loader=PackageLoader("openlfr.transparency", "templates"), autoescape=select_autoescape(["html"]))
    tpl = env.get_template("report.html")
    imgs = [{"key": k, "title": CHART_TITLES.get(k, k), "src": data_uri(png)} for k, png in r.charts().items()]
    return tpl.render(r=r.data, sections=sections(r), charts=imgs, pct=pct, when=when, duration=duration,
                      evidence_json=json.dumps(r.data["threshold"].get("evidence"), indent=2, default=str)
                      if r.data["threshold"].get("evidence") else None)


# Which charts go with which section of the text (the PDF puts each chart right after its text).
CHART_AFTER = {"Threshold": ("calibration",), "Cameras and faces seen": ("faces",),
               "Alerts and outcomes": ("timeline", "adjudication"), "False alert rate and alert precision": ("alerts",)}


def render_pdf(r: Report, out: str | Path) -> Path:
    """A PDF through matplotlib's PdfPages (A4, TrueType fonts so the text can be searched and
    extracted): the sections flow down the page, each chart right after the text it illustrates,
    a new page only when the next block does not fit."""
    import io

    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    from .charts import pyplot

    plt = pyplot()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    d = r.data
    imgs = r.charts()
    blocks: list[tuple[str, object]] = [("title", f"openlfr deployment report - deployment {d['deployment']['id']}"), ("", "")]
    placed = set()
    for head, body in sections(r):
        blocks.append(("head", head))
        for ln in body:
            blocks += [("", w) for w in (textwrap.wrap(ln, 100, subsequent_indent="    ") or [""])]
        for key in CHART_AFTER.get(head, ()):
            if key in imgs:
                blocks.append(("chart", key))
                placed.add(key)
        blocks.append(("", ""))
    blocks += [("chart", k) for k in imgs if k not in placed]
    line_h, top, bottom, left, width = 0.0158, 0.96, 0.04, 0.06, 0.88
    page_ratio = 8.27 / 11.69
    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
        with PdfPages(out, metadata={"Title": f"openlfr deployment report {d['deployment']['id']}",
                                     "Subject": d["deployment"]["name"], "Creator": "openlfr"}) as pdf:
            fig, y = None, top

            def new_page():
                nonlocal fig, y
                if fig is not None:
                    pdf.savefig(fig)
                    plt.close(fig)
                fig, y = plt.figure(figsize=(8.27, 11.69)), top

            new_page()
            for i, (style, item) in enumerate(blocks):
                if style == "chart":
                    img = plt.imread(io.BytesIO(imgs[item]), format="png")
                    h, w = img.shape[:2]
                    wd = min(width, 0.7 if w / h < 2.2 else width)
                    ht = wd * h / w * page_ratio
                    if y - ht - 0.03 < bottom:
                        new_page()
                    fig.text(left, y, CHART_TITLES.get(item, item), fontsize=9, weight="bold", va="top", family="DejaVu Sans")
                    ax = fig.add_axes((left, y - 0.018 - ht, wd, ht))
                    ax.imshow(img)
                    ax.axis("off")
                    y -= ht + 0.03
                    continue
                # keep a heading with at least a few lines of its section
                need = line_h * (4 if style == "head" else 1)
                if y - need < bottom:
                    new_page()
                if style == "" and not item and y == top:
                    continue
                kw = {"fontsize": 8.5, "family": "DejaVu Sans"}
                if style == "title":
                    kw |= {"fontsize": 13, "weight": "bold"}
                elif style == "head":
                    kw |= {"fontsize": 10, "weight": "bold"}
                fig.text(left, y, str(item), va="top", **kw)
                y -= line_h
            pdf.savefig(fig)
            plt.close(fig)
    return out
