"""The privacy invariant, as a test: after a run over the crowd video against the LFW watchlist
(nobody in the video is on it), no file, database row or log line anywhere holds a crop or a
template of a face that matched nobody, and nothing of those faces is left in memory.

How: every chip the run aligns and every descriptor it computes is recorded (in this test's
memory only). Logging is turned up to DEBUG into a log file, the JSON events go to a file, an
annotated video is written. Then every file created or changed during the run, in the repository,
the temporary folder, the openlfr cache and ~/.cache, is searched for the raw bytes of any of those
descriptors (float32 and float64) and chips; the log and event text for anything that looks like a
template (a run of numbers); the annotated video is checked to show no findable face.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from openlfr.engine.detection import make_detector
from openlfr.live import runner as live_runner
from openlfr.live.align import Aligner
from openlfr.live.bestshot import BestShots
from openlfr.live.config import RunConfig

from test_live_real import lfw_watchlist

pytestmark = [pytest.mark.shared]
REPO = Path(__file__).resolve().parents[1]
# eight or more numbers in a row, as a descriptor prints (numpy array, list, JSON, np.float32(...))
NUMBER_RUN = re.compile(r"(?:(?:np\.float(?:32|64)\()?[-+]?\d*\.\d+(?:e[-+]?\d+)?\)?[,\s\]]+){8,}")


def snapshot(roots) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", ".venv-ci", "node_modules")]
            for f in filenames:
                p = os.path.join(dirpath, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                out[p] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.mark.slow
def test_no_trace_of_unmatched_faces(shared_data, tmp_path, monkeypatch, capfd):
    from openlfr.engine.cache import cache_dir

    wl = lfw_watchlist(shared_data)  # built (or read from its cache) before the snapshot
    descriptors: list[np.ndarray] = []
    chips: list[np.ndarray] = []
    cleared: list[BestShots] = []

    real_align = Aligner.align

    def recording_align(self, rgb, det):
        face = real_align(self, rgb, det)
        chips.append(face.chip.copy())
        return face

    real_add = BestShots.add

    def recording_add(self, shot):
        descriptors.append(np.array(shot.descriptor, np.float32))
        return real_add(self, shot)

    real_clear = BestShots.clear

    def recording_clear(self):
        real_clear(self)
        cleared.append(self)

    monkeypatch.setattr(Aligner, "align", recording_align)
    monkeypatch.setattr(BestShots, "add", recording_add)
    monkeypatch.setattr(BestShots, "clear", recording_clear)

    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    events_file = tmp_path / "events.jsonl"
    annotated = tmp_path / "annotated.mp4"
    roots = [REPO, Path(tempfile.gettempdir()), cache_dir(), Path.home() / ".cache", tmp_path]
    before = snapshot(roots)
    t_start = time.time_ns()
    try:
        cfg = RunConfig(sources=[str(shared_data / "video" / "crowd_walk_1920x1080.mp4")],
                        watchlist=Path("lfw-dev"), annotate=annotated)
        with open(events_file, "w") as ev_out:
            r = live_runner.LiveRunner(cfg, on_event=lambda e: ev_out.write(json.dumps(e) + "\n"), watchlist=wl)
            r.prepare()
            workers = []
            r.frame_hook = lambda w, f: workers.append(w) if w not in workers else None
            summary = r.run()
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
    out, err = capfd.readouterr()

    # every face of the run matched nobody
    assert summary["alerts"] == 0 and r.policy.alerts == []
    assert summary["faces_seen"] >= 4 and len(descriptors) >= 10 and len(chips) >= len(descriptors)

    # memory: every track ended and its shots were cleared
    assert workers and all(w.tracker.tracks == [] for w in workers)
    assert all(w._pending == [] for w in workers)
    assert cleared and all(b.shots == [] and b.template is None for b in cleared)

    # files: whatever was created or changed during the run
    after = snapshot(roots)
    changed = [p for p, v in after.items() if before.get(p) != v and v[0] >= t_start - 2_000_000_000]
    assert str(annotated) in changed and str(events_file) in changed
    needles = []
    for d in descriptors:
        needles.append(d[:16].astype(np.float32).tobytes())
        needles.append(d[:8].astype(np.float64).tobytes())
    for c in chips:
        needles.append(np.ascontiguousarray(c[75, 40:90]).tobytes())  # 150 bytes of a middle row
        needles.append(np.ascontiguousarray(c[75, 40:90, ::-1]).tobytes())  # the same as BGR
    for p in changed:
        try:
            if os.path.getsize(p) > 200_000_000:
                continue
            data = Path(p).read_bytes()
        except OSError:
            continue
        for n in needles:
            assert n not in data, f"{p} holds a template or crop of an unmatched face"

    # log lines and events: nothing that looks like a template or image data
    texts = {"log": log_file.read_text(), "events": events_file.read_text(), "stdout": out, "stderr": err}
    for name, text in texts.items():
        assert not NUMBER_RUN.search(text), f"{name} holds a run of numbers (a template?)"
        for d in descriptors[:50]:
            assert f"{d[0]:.6f}" not in text or f"{d[1]:.6f}" not in text
    assert "camera crowd_walk_1920x1080.mp4: ended" in texts["log"]  # the log did record the run

    # the annotated video: no face findable in it (no alert, so every face is blurred)
    hog = make_detector("hog", upsample=0)
    orig = cv2.VideoCapture(str(shared_data / "video" / "crowd_walk_1920x1080.mp4"))
    ann = cv2.VideoCapture(str(annotated))
    n = found_orig = found_ann = 0
    while True:
        ok1, a = orig.read()
        ok2, b = ann.read()
        if not (ok1 and ok2):
            break
        if n % 15 == 0:
            found_orig += len(hog.detect(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)))
            found_ann += len(hog.detect(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)))
        n += 1
    assert n == 105
    assert found_orig >= 5 and found_ann == 0
