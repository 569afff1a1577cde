"""The console's alert queue (governance/alert_queue.py) on SQLite and PostgreSQL: filters by
deployment, camera, status (the latest adjudication) and subject; pages; role check."""

from __future__ import annotations

import pytest

from openlfr.governance.alert_queue import queue
from openlfr.governance.errors import GovernanceError, PermissionDenied
from openlfr.governance.testing import make_world
from dbtesting import db_url, fast_passwords  # noqa: F401


def test_filters_and_pages(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url, subjects=3)
    d1 = w.active_deployment()
    ids = [w.alert(d1, w.subjects[i % 3], track=i + 1, camera="cam-a" if i % 2 else "cam-b") for i in range(12)]
    op = w["operator"]
    w.gov.adjudicate(op, ids[0], "true_alert")
    w.gov.adjudicate(op, ids[1], "true_alert")
    w.gov.adjudicate(op, ids[1], "false_alert", reason="second look at the probe")  # a later decision wins
    q = queue(w.gov, op, per_page=5)
    assert q.total == 12 and q.pages == 3 and [a["id"] for a in q.alerts] == ids[::-1][:5]
    assert [a["id"] for a in queue(w.gov, op, per_page=5, page=3).alerts] == ids[1::-1]
    assert queue(w.gov, op, per_page=5, page=9).alerts == []
    assert {a["id"] for a in queue(w.gov, op, status="true_alert").alerts} == {ids[0]}
    assert {a["id"] for a in queue(w.gov, op, status="false_alert").alerts} == {ids[1]}
    assert queue(w.gov, op, status="pending").total == 10
    assert {a["camera"] for a in queue(w.gov, op, camera="cam-a").alerts} == {"cam-a"} and queue(w.gov, op, camera="cam-a").total == 6
    by_name = queue(w.gov, op, subject="person s2")
    assert by_name.total == 4 and {a["subject_name"] for a in by_name.alerts} == {"Person S2"}
    assert queue(w.gov, op, subject=str(w.subjects[2])).total == 4
    assert queue(w.gov, op, subject="S3").total == 4  # the subject's reference
    assert queue(w.gov, op, deployment=d1 + 1).total == 0
    both = queue(w.gov, op, camera="cam-b", status="pending", subject="Person S1")
    assert all(a["camera"] == "cam-b" and a["adjudication"] is None and a["subject_name"] == "Person S1" for a in both.alerts)
    with pytest.raises(GovernanceError):
        queue(w.gov, op, status="maybe")
    with pytest.raises(PermissionDenied):
        queue(w.gov, w["watchlist_manager"])
