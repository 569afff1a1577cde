"""Crash safety and concurrent writers, with real processes, on SQLite and PostgreSQL.

- A writer killed with SIGKILL while alerts arrive loses no alert it had acknowledged
  (``DeploymentSink.record`` returned its id, and the writer printed it).
- Two camera workers writing alerts and faces-seen counts at once corrupt nothing: every alert
  is there, the counts add up, and the audit chain is intact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from openlfr.governance.clock import TestClock
from openlfr.governance.testing import make_world
from openlfr.store.models import AlertRow, FacesSeen
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)

WRITER = r"""
import sys
import time
import numpy as np
from openlfr.governance import Governance, open_deployment_run
from openlfr.governance.testing import PASSWORD
from openlfr.live.sink import AlertRecord

url, dep, subject, camera, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
run = open_deployment_run(url, dep, actor=Governance(url).login("operator", PASSWORD))
if len(sys.argv) > 6:  # wait for the starting gun, so that the writers really overlap
    import os
    print("ready", flush=True)
    while not os.path.exists(sys.argv[6]):
        time.sleep(0.005)
crop = b"\xff\xd8\xff\xe0" + bytes(2000) + b"\xff\xd9"
i = 0
while n < 0 or i < n:
    tmpl = np.full(128, (i % 97) / 97.0, np.float32)
    aid = run.sink.record(AlertRecord(camera=camera, track=i, subject_id=subject, distance=0.3,
                                      frame=i, media_time=i / 25.0, crop=crop, template=tmpl))
    run.sink.count_faces_seen(camera, 1)
    print(aid, flush=True)  # acknowledged: committed before this line
    i += 1
    time.sleep(0.003)  # alerts arrive at a (high) real rate, not in a tight loop
print("done", flush=True)
"""


@pytest.fixture
def live_world(db_url, fast_passwords):  # noqa: F811
    """An active deployment whose window contains the real time (the writers use the system clock)."""
    w = make_world(db_url, clock=TestClock(datetime.now(timezone.utc)), subjects=1)
    d = w.active_deployment(start_in=timedelta(0), length=timedelta(hours=2))
    return w, d


def _writer(url: str, dep: int, subject: int, camera: str, n: int, go: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", WRITER, url, str(dep), str(subject), camera, str(n)] + ([go] if go else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _count(w, *where) -> int:
    with w.gov.db.transaction() as s:
        return s.execute(select(func.count()).select_from(AlertRow).where(*where)).scalar_one()


def test_sigkill_loses_no_acknowledged_alert(live_world, db_url):  # noqa: F811
    w, dep = live_world
    p = _writer(db_url, dep, w.subjects[0], "cam-a", -1)
    acked: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(acked) < 25 and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            acked.append(int(line))
        assert len(acked) >= 25, p.stderr.read()
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.kill()
        rest, _ = p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    acked += [int(x) for x in rest.split() if x.isdigit()]  # printed before it died: also acknowledged
    with w.gov.db.transaction() as s:
        stored = set(s.execute(select(AlertRow.id).where(AlertRow.deployment_id == dep)).scalars())
        if s.bind.dialect.name == "sqlite":
            assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    missing = sorted(set(acked) - stored)
    assert not missing, f"acknowledged alerts lost: {missing}"
    assert len(stored) - len(set(acked)) <= 1  # at most the one being committed when killed
    assert w.gov.verify_audit(w["auditor"]).ok


def test_two_camera_workers_at_once(live_world, db_url, tmp_path):  # noqa: F811
    w, dep = live_world
    n = 60
    go = tmp_path / "go"
    procs = [_writer(db_url, dep, w.subjects[0], cam, n, str(go)) for cam in ("cam-a", "cam-b")]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    go.touch()
    outs = []
    for p in procs:
        out, errs = p.communicate(timeout=120)
        assert p.returncode == 0, errs
        outs.append(out.split())
    ids = [int(x) for o in outs for x in o if x.isdigit()]
    with w.gov.db.transaction() as s:
        order = s.execute(select(AlertRow.camera).where(AlertRow.deployment_id == dep).order_by(AlertRow.id)).scalars().all()
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches >= 2, "the two writers did not overlap"
    assert all(o[-1] == "done" for o in outs)
    assert len(ids) == 2 * n and len(set(ids)) == 2 * n
    assert _count(w, AlertRow.deployment_id == dep) == 2 * n
    assert _count(w, AlertRow.camera == "cam-a") == n and _count(w, AlertRow.camera == "cam-b") == n
    with w.gov.db.transaction() as s:
        seen = dict(s.execute(select(FacesSeen.camera, FacesSeen.count).where(FacesSeen.deployment_id == dep)).all())
    assert seen == {"cam-a": n, "cam-b": n}
    r = w.gov.verify_audit(w["auditor"])
    assert r.ok, str(r)
    dep_view = w.gov.get_deployment(w["auditor"], dep)
    assert dep_view["faces_seen"]["total"] == 2 * n and dep_view["alerts"]["total"] == 2 * n
