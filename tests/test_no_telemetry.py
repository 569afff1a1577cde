"""No telemetry: a real job (``openlfr faces`` on a photo) leaves no onnxruntime device id or
session file behind and tries no outbound connection.

onnxruntime 1.32 writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid`` and a
``.ses`` file in the temp folder, and would upload a process event, unless
``ORT_DISABLE_TELEMETRY=1`` is set before it loads; the package sets it (``openlfr/__init__.py``).
The job runs in a subprocess with a fresh HOME and TMPDIR, with the variable *not* set by the
caller, and with sockets guarded: a ``sitecustomize`` audit hook refuses and records every
non-loopback connect (and name lookup) made through Python; under ``strace`` (when installed)
every ``connect`` made by native code too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GUARD = r'''
import os, socket, sys

LOG = os.environ["OPENLFR_TEST_NET_LOG"]
LOCAL = ("127.", "::1", "localhost", "0.0.0.0", "")


def _hook(event, args):
    if event == "socket.connect":
        addr = args[1]
        host = addr[0] if isinstance(addr, tuple) else ""
        family = getattr(args[0], "family", None)
        if family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(LOCAL):
            with open(LOG, "a") as f:
                f.write(f"connect {addr!r}\n")
            raise ConnectionRefusedError(f"test guard: outbound connection to {addr!r} refused")
    elif event == "socket.getaddrinfo":
        host = args[0]
        if host and not str(host).startswith(LOCAL):
            with open(LOG, "a") as f:
                f.write(f"getaddrinfo {host!r}\n")
            raise OSError(f"test guard: name lookup of {host!r} refused")


sys.addaudithook(_hook)
'''


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_real_job_leaves_no_telemetry(tmp_path, astronaut):
    import cv2

    home, tmp, guard = tmp_path / "home", tmp_path / "tmp", tmp_path / "guard"
    for d in (home, tmp, guard):
        d.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    img = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(img), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env |= {"HOME": str(home), "TMPDIR": str(tmp), "OPENLFR_TEST_NET_LOG": str(log),
            "PYTHONPATH": os.pathsep.join([str(guard), str(REPO / "src")])}
    cmd = [sys.executable, "-c", "from openlfr.cli import main; main()", "faces", str(img), "--json"]
    strace = shutil.which("strace")
    trace = tmp_path / "connect.txt"
    if strace:
        cmd = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace)] + cmd
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert '"descriptor"' in r.stdout  # the job ran: a face and its descriptor (onnxruntime loaded)
    assert not (home / ".cache" / "Microsoft").exists(), _files(home)
    assert _files(tmp) == [], "files left in the temp folder"
    assert not log.exists(), log.read_text()
    if strace:
        connects = [ln for ln in trace.read_text().splitlines() if "AF_INET" in ln]
        outbound = [ln for ln in connects if "127.0.0.1" not in ln and "::1" not in ln]
        assert outbound == [], outbound


@pytest.mark.parametrize("module", ["openlfr", "openlfr.engine.descriptor", "openlfr.engine.mmod"])
def test_the_package_disables_telemetry_before_onnxruntime_loads(module):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env["PYTHONPATH"] = str(REPO / "src")
    code = f"import {module}, os, sys; print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
