"""How a deployment's alert threshold is chosen at planning: calibrated by default, manual only
with a reason, and in both cases the false alert rate it implies beside the target.

Why: a deployment planned without a threshold used to get dlib's 0.6, at which a face that is
not on a large watchlist alerts far more often than any target anyone set, and nothing told the
planner or the authorising officer. Now the default is the packaged scoring model
(``openlfr.scoring``) for the watchlist's size and the target FPIR; a planner who sets a
distance by hand must say why, and the expected rate at that distance (from the packaged
impostor table) is stored with it, for the authorisation page and the report.
"""

from __future__ import annotations

from .errors import GovernanceError

SCORING_KIND = "openlfr scoring model"
MANUAL_KIND = "manual threshold"


def plan_evidence(n_subjects: int, threshold: float | None, reason: str, target_fpir: float) -> tuple[float, dict]:
    """``(distance stored in deployments.threshold, evidence JSON)`` for a planned deployment."""
    from ..scoring import ScoringError, load_scoring_model
    from ..watchlist.threshold import fpir

    if not 0.0 < float(target_fpir) < 1.0:
        raise GovernanceError("the target FPIR must be between 0 and 1")
    n = max(int(n_subjects), 1)
    if threshold is None:
        try:
            ev = load_scoring_model().evidence(n, float(target_fpir))
        except ScoringError as e:
            raise GovernanceError(str(e)) from None
        ev["chosen_by"] = "calibrated default (no threshold given)"
        return float(ev["threshold"]), ev
    t = float(threshold)
    if not (0.0 < t < 2.0):
        raise GovernanceError("the threshold is a descriptor distance in (0, 2)")
    if not (reason or "").strip():
        raise GovernanceError("a manual threshold needs a reason (--threshold-reason); without --threshold the "
                              "calibrated scoring model is used")
    expected = float(fpir(t, n))
    return t, {
        "kind": MANUAL_KIND, "threshold": t, "reason": reason.strip(), "watchlist_size": n,
        "target_fpir": float(target_fpir), "expected_fpir": expected,
        "expected_vs_target": round(expected / float(target_fpir), 3),
        "expected_fpir_basis": "packaged impostor table (raw distance, independence formula)",
        "chosen_by": "manual",
    }


def expected_line(evidence: dict | None) -> str | None:
    """One sentence for the plan, the authorisation page and the report: expected rate and target."""
    if not evidence:
        return None
    target = evidence.get("target_fpir")
    if evidence.get("kind") == SCORING_KIND:
        lc = evidence.get("local_check")
        checked = (f"; checked on local data ({lc.get('identities')} identities): {lc['verdict']}"
                   if isinstance(lc, dict) and lc.get("verdict") else "")
        return (f"expected false alert rate {evidence['expected_fpir']:.3%} per face seen in every quality band "
                f"(target {target:.3%}); calibrated scoring model for {evidence['watchlist_size']} subjects{checked}")
    exp = evidence.get("expected_fpir")
    if exp is None:
        exp = evidence.get("fpir_direct_at_threshold", evidence.get("fpir_independent_at_threshold"))
    if exp is None or target is None:
        return None
    warn = "  ABOVE THE TARGET" if exp > float(target) * 1.0001 else ""
    how = "manual threshold: " + evidence["reason"] if evidence.get("kind") == MANUAL_KIND else "calibration"
    return (f"expected false alert rate {exp:.3%} per face seen (target {float(target):.3%}){warn}; {how}")
