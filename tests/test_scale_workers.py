"""Many sites on loopback: several camera-worker processes post alerts to one ``openlfr serve``
(a subprocess) at once; every alert arrives exactly once, re-deliveries are duplicates.
SQLite always; PostgreSQL when ``OPENLFR_TEST_PG`` names a server (skipped otherwise)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dbtesting import backend_url, fast_passwords  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_workers  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_deliver_every_alert_exactly_once(backend, tmp_path, fast_passwords):  # noqa: F811
    with backend_url(backend, tmp_path) as url:
        d, tokens, world = bench_workers.setup(url, 3)
        with bench_workers.server(url, tmp_path / "server.log") as (base, proc):
            results = bench_workers.run_workers(base, d, tokens, world.subjects, 15, tmp_path, resend=0.2, timeout_s=120)
            assert proc.poll() is None  # the server is still up
        summary = bench_workers.summarise(results, max(r["wall_s"] for r in results))
        check = bench_workers.check_exactly_once(world, d, results)
        assert summary["workers"] == 3 and summary["alerts"] == 45 and summary["left_in_buffer"] == 0
        assert summary["refused"] == 0 and summary["resend_duplicates_ok"]
        assert check["sent"] == 45 + 3 * 3 and check["exactly_once"], check
        assert check["ids_distinct"] and check["updated_rows"] == 0
        # and the audit trail holds every alert, its hash chain intact
        from openlfr.governance import audit

        with world.gov.db.transaction() as s:
            assert audit.verify(s).ok
        world.gov.db.dispose()
