"""The README's governed-deployment walkthrough, executed as written.

The code block under "### Governed deployments" is read from README.md and run line by line in
bash, verbatim, except for what a reader must supply anyway: the watchlist folder (``refs/``:
the Hamilton reference photos), the camera (``rtsp://...``: the Hamilton clip), the
passwords (``$ADMIN_PW``..., given in the environment) and the audit anchor the export printed
(``HASH@SEQ``). Every step must succeed; then the
database holds what the walkthrough says: an adjudicated, engaged alert, an ended deployment,
a published record, a report and an audit export.

Needs the real data in ``../shared`` (skipped cleanly without it). Also checks the CLI's
promises the walkthrough relies on: ``openlfr --version``, the missing-password error naming
``OPENLFR_ACTOR_PASSWORD``, ``--end +4h`` counted from ``--start``, an alert list in 80 columns.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import openlfr

REPO = Path(__file__).resolve().parents[1]
PASSWORDS = {"ADMIN_PW": "admin walkthrough pw", "WM_PW": "wm walkthrough pw", "OP_PW": "op walkthrough pw",
             "AO_PW": "ao walkthrough pw", "EO_PW": "eo walkthrough pw", "AU_PW": "au walkthrough pw"}


def walkthrough_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Governed deployments"):]
    m = re.search(r"```bash\n(.*?)```", section, re.S)
    assert m, "no bash block under '### Governed deployments'"
    return m.group(1)


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments after a command kept (bash drops them)."""
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip() and not c.strip().startswith("#")]


@pytest.fixture
def shell_env(tmp_path):
    """A bash environment whose ``openlfr`` is this checkout's, with its own data directory and database."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "openlfr"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "from openlfr.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    src = str(Path(openlfr.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLFR_")}
    env.update(PASSWORDS)
    env.update({"PATH": f"{bin_dir}:{env.get('PATH', '')}", "PYTHONPATH": src, "HOME": str(tmp_path),
                "XDG_DATA_HOME": str(tmp_path / "data"), "OPENLFR_DB": f"sqlite:///{tmp_path / 'lfr.db'}",
                "COLUMNS": "80", "OPENLFR_RUNTIME": os.environ.get("OPENLFR_RUNTIME", "onnx")})
    return env


def bash(cmd: str, env: dict, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=600)


def test_readme_walkthrough_runs_as_written(shared_data, shell_env, tmp_path):
    video = shared_data / "video"
    block = walkthrough_block()
    assert "rtsp://" in block and " refs/ " in block
    ran = []
    for cmd in commands(block):
        # what a reader supplies: the watchlist folder and the camera; nothing else is changed
        line = cmd.replace(" refs/ ", f" {video / 'hamilton_refs'}/ ")
        line = re.sub(r"cam-a=rtsp://\S+", f"cam-a={video / 'hamilton_clip_640x360.mp4'}", line)
        if "--anchor HASH@SEQ" in line:  # the anchor the reader kept from the export, as printed there
            anchor = re.search(r"^anchor: (\S+)$", ran[-1][1].stderr, re.M)
            assert anchor, ran[-1][1].stderr
            line = line.replace("--anchor HASH@SEQ", f"--anchor {anchor.group(1)}")
        if "--as " in line:  # every step that acts as someone says how its password is given
            assert "OPENLFR_ACTOR_PASSWORD=$" in line, cmd
        r = bash(line, shell_env, tmp_path, stdin="")  # no terminal, nothing on stdin: a missing password fails
        assert r.returncode == 0, f"{cmd}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
        ran.append((cmd, r))
    # the state the walkthrough describes
    env = {**shell_env, "OPENLFR_ACTOR_PASSWORD": PASSWORDS["AU_PW"]}
    dep = json.loads(bash("openlfr deployment show 1 --json --as au", env, tmp_path).stdout)
    assert dep["status"] == "ended" and dep["alerts"]["true_alerts"] >= 1 and dep["faces_seen"]["total"] >= 1
    assert (tmp_path / "report.html").stat().st_size > 1000 and (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    exported = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines() if x.startswith("{")]
    actions = {e["action"] for e in exported}
    assert {"deployment.publish", "alert.adjudicate", "alert.outcome", "deployment.start"} <= actions
    listing = next(r for c, r in ran if " alert list " in f" {c} ")
    assert max(len(x) for x in listing.stdout.splitlines()) <= 80, listing.stdout  # the alert list fits 80 columns
    assert "1" in listing.stdout and "cam-a" in listing.stdout


def test_cli_promises(shell_env, tmp_path):
    v = bash("openlfr --version", shell_env, tmp_path)
    assert v.returncode == 0 and re.match(r"^openlfr \S+", v.stdout), v
    pw = PASSWORDS["ADMIN_PW"]
    assert bash(f"OPENLFR_PASSWORD='{pw}' openlfr user add admin --role administrator", shell_env, tmp_path).returncode == 0
    # no password anywhere, no terminal: the error says which variable to set
    r = bash(f"OPENLFR_PASSWORD='x y z w v' openlfr user add op --role operator --as admin", shell_env, tmp_path)
    assert r.returncode == 2 and "OPENLFR_ACTOR_PASSWORD" in r.stderr, r.stderr
    env = {**shell_env, "OPENLFR_ACTOR_PASSWORD": pw}
    for name, role in (("op", "operator"), ("wm", "watchlist_manager")):
        assert bash(f"OPENLFR_PASSWORD='{pw}' openlfr user add {name} --role {role} --as admin", env, tmp_path).returncode == 0
    assert bash("openlfr watchlist create wanted --as wm", env, tmp_path).returncode == 0
    r = bash("openlfr deployment plan --name n --use-case u --location l --zone z --start 2031-06-01T09:00+00:00 --end +4h "
             "--camera cam-a --watchlist wanted --as op", env, tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(bash("openlfr deployment show 1 --json --as op", env, tmp_path).stdout)
    assert d["starts_at"].startswith("2031-06-01T09:00") and d["ends_at"].startswith("2031-06-01T13:00")  # 4 h after the start
