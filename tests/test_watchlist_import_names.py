"""``openlfr watchlist import`` on file and folder names that are not valid UTF-8 (or that look
like console markup): each bad one is reported, escaped, and skipped; the other subjects are
enrolled, each in full; no crash and no exit status 1 (which means "audit chain broken").
The real command in a subprocess, the real face engine, real files named with raw bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dbtesting import backend_url, fast_passwords  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
PW = "long enough password"


def _cli(db: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OPENLFR_DB": db, "OPENLFR_USER": "wm", "OPENLFR_ACTOR_PASSWORD": PW,
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    return subprocess.run([sys.executable, "-c", "from openlfr.cli import main; main()", *args], env=env,
                          capture_output=True, timeout=600)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_skips_names_that_are_not_utf8(backend, tmp_path, fast_passwords, astronaut):  # noqa: F811
    import cv2

    from openlfr.governance import Governance
    from openlfr.governance.testing import PASSWORD

    face = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(astronaut[0:300, 100:350]), cv2.COLOR_RGB2BGR))[1].tobytes()
    refs = tmp_path / "refs"
    root = os.fsencode(refs)
    for rel in (b"Anna_Smith/face.jpg", b"Anna_Smith/\xff\xfebad.jpg", b"Bob_Jones/[/x].jpg", b"C\xe9_Latin1/face.jpg",
                b"Dan_Only_Bad/\xc3\x28.jpg"):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(face)
    with backend_url(backend, tmp_path) as db:
        gov = Governance(db)
        admin = gov.bootstrap_admin("admin", PASSWORD)
        from openlfr.governance.roles import Actor

        a = Actor(name="admin", roles=frozenset({"administrator"}), user_id=admin.id)
        gov.create_user(a, "wm", ["watchlist_manager"], PW)
        wm = gov.login("wm", PW)
        gov.create_watchlist(wm, "wanted")
        r = _cli(db, "watchlist", "import", "wanted", str(refs), "--category", "wanted_by_courts", "--reason", "test",
                 "--expires", "+10d")
        stderr, stdout = r.stderr.decode("utf-8"), r.stdout.decode("utf-8")
        assert r.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert "\\xff\\xfebad.jpg: the file name is not valid UTF-8 (rename the file)" in stderr
        assert "\\xc3(.jpg: the file name is not valid UTF-8" in stderr
        assert "C\\xe9_Latin1/face.jpg: the subject's folder name is not valid UTF-8" in stderr
        assert "excluded subject C\\xe9_Latin1" in stderr and "excluded subject Dan_Only_Bad" in stderr
        assert "2 subject(s) enrolled" in stdout and "2 image(s) accepted, 3 rejected" in stdout
        subjects = {s["ref"]: s for s in gov.list_subjects(wm, "wanted")}
        assert set(subjects) == {"Anna_Smith", "Bob_Jones"}
        assert [len(s["images"]) for s in (subjects["Anna_Smith"], subjects["Bob_Jones"])] == [1, 1]
        assert subjects["Bob_Jones"]["images"][0]["source"].endswith("Bob_Jones/[/x].jpg")
