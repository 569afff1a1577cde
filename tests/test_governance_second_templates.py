"""The second model's templates (SFace, ``engine/sface.py``) through storage and governance:
migration 0008, governed enrolment (``Template.second_vector``), the deployment's snapshot, its
run (``DeploymentRun.second_templates``) and the camera worker's wire (``GET /api/worker/run``)."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import inspect, select, text

from openlfr.governance.service import NewImage
from openlfr.governance.testing import FAKE_JPEG, make_world, template
from openlfr.store import repository as repo
from openlfr.store.db import current_revision, downgrade, head_revision, upgrade
from openlfr.store.models import SnapshotTemplate, Template
from dbtesting import backend_url, db_url, fast_passwords  # noqa: F401  (fixtures)


def _columns(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def _counts(engine) -> dict[str, int]:
    with engine.connect() as c:
        return {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in ("templates", "snapshot_templates")}


def test_migration_0008_adds_the_columns_and_keeps_the_rows(db_url, fast_passwords):  # noqa: F811
    """0007 -> 0008 on a database with templates and a live snapshot: the nullable columns are
    added, every row is kept (its vector unchanged, no second vector), and the run still opens."""
    w = make_world(db_url)
    d = w.active_deployment()
    engine = w.gov.db.engine
    with engine.connect() as c:
        before = c.execute(text("SELECT id, vector FROM templates ORDER BY id")).all()
    counts = _counts(engine)
    assert counts["templates"] == 2 and counts["snapshot_templates"] == 2
    downgrade(engine, "0007")
    assert current_revision(engine) == "0007"
    assert "second_vector" not in _columns(engine, "templates") | _columns(engine, "snapshot_templates")
    assert _counts(engine) == counts
    upgrade(engine, "0008")
    assert current_revision(engine) == "0008"  # (head is later: 0009 keeps how alerts were decided)
    assert "second_vector" in _columns(engine, "templates") and "second_vector" in _columns(engine, "snapshot_templates")
    assert _counts(engine) == counts
    with engine.connect() as c:
        assert [(i, bytes(v)) for i, v in c.execute(text("SELECT id, vector FROM templates ORDER BY id"))] == \
            [(i, bytes(v)) for i, v in before]
        assert c.execute(text("SELECT count(*) FROM templates WHERE second_vector IS NOT NULL")).scalar_one() == 0
        assert c.execute(text("SELECT count(*) FROM snapshot_templates WHERE second_vector IS NOT NULL")).scalar_one() == 0
    upgrade(engine)  # on to the head (the models are the head's)
    assert current_revision(engine) == head_revision()
    run = w.gov.open_run(w["operator"], d)
    assert len(run.watchlist_templates) == 2 and run.second_templates is None and run.watchlist().second_templates is None


# -- enrolment with a real engine, the snapshot and the run ------------------------------------------


@pytest.fixture(scope="module")
def engines():
    """RetinaFace with the second model (SFace), and HOG, which has none."""
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.sface import load_second_model

    retina = FaceEngine()
    if retina.second_model is None:
        load_second_model("sface")  # fails with the reason (the package is part of the product's install)
    return retina, FaceEngine(detector="hog")


def _face_jpeg(astronaut) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(astronaut[0:300, 100:350])).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_enrolment_stores_the_second_template_and_the_run_gets_it(db_url, fast_passwords, engines, astronaut):  # noqa: F811
    from openlfr.web.enrol import FaceEnroller, Upload

    retina, hog = engines
    w = make_world(db_url, subjects=1)  # S1: a template of its own (no second)
    data = _face_jpeg(astronaut)
    expires = w.clock.now() + timedelta(days=30)
    wm = w["watchlist_manager"]
    enrolled = {}
    for ref, engine in (("R1", retina), ("H1", hog)):
        res = FaceEnroller(engine=engine)(ref, "Eileen Collins", "wanted_by_courts", [Upload("face.jpg", data)])
        assert len(res.images) == 1
        enrolled[ref] = (w.gov.enrol_subject(wm, w.watchlist, ref, f"Person {ref}", "wanted_by_courts", "warrant", expires,
                                             res.images).id, res.images[0])
    with w.gov.db.transaction() as s:
        rows = {sid: s.execute(select(Template.vector, Template.second_vector).where(Template.subject_id == sid)).one()
                for sid, _ in enrolled.values()}
    rid, rim = enrolled["R1"]
    vec, second = rows[rid]
    assert second is not None and len(second) == 128 * 4
    feat = repo.vector_array(second)
    assert np.isfinite(feat).all() and np.linalg.norm(feat) == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(feat, np.asarray(rim.second_template, np.float32))
    assert np.array_equal(repo.vector_array(vec), np.asarray(rim.template, np.float32))
    hid, him = enrolled["H1"]
    assert him.second_template is None and rows[hid][1] is None  # HOG: no landmarks for SFace, NULL

    # the snapshot copies it; the run returns it row-aligned with the dlib templates
    d = w.active_deployment()
    with w.gov.db.transaction() as s:
        snap = {sid: sv for sid, sv in s.execute(select(SnapshotTemplate.subject_id, SnapshotTemplate.second_vector))}
    assert snap[rid] == second and snap[hid] is None and snap[w.subjects[0]] is None
    run = w.gov.open_run(w["operator"], d)
    st = run.second_templates
    assert st is not None and st.dtype == np.float32 and st.shape == run.watchlist_templates.shape
    for j, sid in enumerate(run.template_subject_ids):
        if int(sid) == rid:
            assert np.array_equal(st[j], feat)
            assert np.array_equal(run.watchlist_templates[j], repo.vector_array(vec))
        else:
            assert np.isnan(st[j]).all()
    wl = run.watchlist()
    assert wl.n_second == 1 and np.array_equal(wl.second_templates, st, equal_nan=True)


def test_a_partly_missing_second_template_is_refused(tmp_path, fast_passwords):  # noqa: F811
    from openlfr.governance.errors import GovernanceError

    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url, subjects=0)
        bad = template(7)
        bad[:3] = np.nan
        with pytest.raises(GovernanceError, match="non-finite"):
            w.gov.enrol_subject(w["watchlist_manager"], w.watchlist, "X", "X", "wanted_by_courts", "warrant",
                                w.clock.now() + timedelta(days=1),
                                [NewImage(data=FAKE_JPEG, template=template(1), second_template=bad)])
        with pytest.raises(GovernanceError, match="128"):
            w.gov.enrol_subject(w["watchlist_manager"], w.watchlist, "X", "X", "wanted_by_courts", "warrant",
                                w.clock.now() + timedelta(days=1),
                                [NewImage(data=FAKE_JPEG, template=template(1), second_template=np.ones(64, np.float32))])


# -- the camera worker's wire ---------------------------------------------------------------------


def test_worker_run_carries_the_second_templates(tmp_path, fast_passwords, monkeypatch):  # noqa: F811
    """``GET /api/worker/run`` sends them (NaN rows stay NaN), ``open_remote_run`` decodes them into
    the DeploymentRun; a server that sends none (or predates them) gives None."""
    from openlfr.server import create_app
    from openlfr.web.security import Tokens
    from openlfr.web.testing import fake_enroller, live_server
    from openlfr.worker import client as worker_client
    from openlfr.worker.client import open_remote_run

    monkeypatch.setenv("OPENLFR_DATA_DIR", str(tmp_path / "worker-data"))  # the worker's buffer
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url, subjects=1)  # S1: no second template
        expires = w.clock.now() + timedelta(days=30)
        images = [NewImage(data=FAKE_JPEG + b"a", template=template(11), second_template=template(12)),
                  NewImage(data=FAKE_JPEG + b"b", template=template(13), second_template=np.full(128, np.nan, np.float32))]
        w.gov.enrol_subject(w["watchlist_manager"], w.watchlist, "S2", "Person S2", "wanted_by_courts", "warrant", expires, images)
        d = w.active_deployment()
        token = Tokens(w.gov).create(w["operator"], "worker", "cam host", deployment_id=d)[0]
        app = create_app(url, w.clock, enroller=fake_enroller)
        local = w.gov.open_run(w["operator"], d)
        assert local.second_templates is not None and np.isfinite(local.second_templates).all(axis=1).sum() == 1
        with live_server(app) as server:
            remote = open_remote_run(server, token, d)
            assert np.array_equal(remote.watchlist_templates, local.watchlist_templates)
            assert remote.second_templates.dtype == np.float32
            assert np.array_equal(remote.second_templates, local.second_templates, equal_nan=True)
            assert np.array_equal(remote.watchlist().second_templates, local.second_templates, equal_nan=True)
            # a server from before the second model sends no such field: the run has none
            call = worker_client.WorkerClient.call

            def old_server(self, method, path, *a, **kw):
                r = call(self, method, path, *a, **kw)
                if path == "/api/worker/run":
                    r.pop("second_templates")
                return r

            with monkeypatch.context() as m:
                m.setattr(worker_client.WorkerClient, "call", old_server)
                assert open_remote_run(server, token, d).second_templates is None


def test_cli_enrolment_hands_the_second_templates_to_governance(tmp_path):
    """``openlfr watchlist add/import``: each enrolled image's second feature goes with it (None for a NaN row)."""
    from openlfr.cli.governance import _new_images
    from openlfr.watchlist.model import Subject, Watchlist

    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for p in paths:
        p.write_bytes(FAKE_JPEG)
    second = np.stack([template(2), np.full(128, np.nan, np.float32)])
    wl = Watchlist([Subject("S", "S", "wanted_by_courts")], np.stack([template(1), template(3)]), np.zeros(2), np.ones(2),
                   [str(p) for p in paths], second_templates=second)
    ims = _new_images(wl, 0, "custody", None)
    assert np.array_equal(ims[0].second_template, second[0]) and np.isnan(ims[1].second_template).all()
    assert repo.second_vector_bytes(ims[0].second_template) == second[0].astype("<f4").tobytes()
    assert repo.second_vector_bytes(ims[1].second_template) is None
