"""Test helpers for the API and console: a fake enroller, tokens per role, a live server in a thread.

``fake_enroller`` stands in for the face engine: a JPEG upload is accepted with a template
derived from its bytes; anything else is rejected with a reason, as the real checks would.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ..governance.service import NewImage
from ..governance.testing import FAKE_JPEG, World
from .enrol import EnrolmentRejected, EnrolResult, Upload
from .security import Tokens


def fake_enroller(ref: str, name: str, category: str, uploads: list[Upload], source: str = "", taken_at=None) -> EnrolResult:
    images, accepted, rejected = [], [], []
    for up in uploads:
        if not up.data.startswith(b"\xff\xd8"):
            rejected.append({"path": up.filename, "reason": "not an image (cannot be decoded)"})
            continue
        seed = int.from_bytes(hashlib.sha256(up.data).digest()[:4], "little")
        v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
        images.append(NewImage(data=up.data, template=v / np.linalg.norm(v), quality=0.9, source=source or up.filename,
                               taken_at=taken_at, media_type="image/jpeg"))
        accepted.append({"path": up.filename, "subject_id": ref, "quality": 0.9, "box": [0, 0, 100, 100], "note": ""})
    report = {"source": "upload", "accepted": accepted, "rejected": rejected, "excluded_subjects": [] if images else [ref]}
    if not images:
        raise EnrolmentRejected("no image passed the quality checks", report)
    return EnrolResult(images, report)


def jpeg(seed: int = 0) -> bytes:
    return FAKE_JPEG + int(seed).to_bytes(4, "little")


def role_tokens(world: World) -> dict[str, str]:
    """A bearer token for each role's user of ``world``."""
    tokens = Tokens(world.gov)
    return {role: tokens.create(actor, "api", f"test {role}")[0] for role, actor in world.actors.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app, port: int | None = None, trusted_proxy: str | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread, as ``openlfr serve`` does; yields its base URL; stops it afterwards."""
    import uvicorn

    from .security import proxy_settings

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=1,
                            **proxy_settings(trusted_proxy))
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(timeout=10)
