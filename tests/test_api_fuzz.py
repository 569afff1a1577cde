"""Schema-driven fuzzing of the API (schemathesis, from /openapi.json): no request, however
malformed, may produce a server error (5xx).

Each operation gets a bounded number of generated requests (``OPENLFR_FUZZ_EXAMPLES``, default
8), valid and invalid, as a user holding every role (so requests get past the role checks and
reach validation and governance), or with a worker token on the worker endpoints. The live
stream is left out (it is a long-lived response; its parameters are tested in test_api_worker).
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

from openlfr.governance.roles import ROLES  # noqa: E402
from openlfr.governance.testing import PASSWORD, make_world  # noqa: E402
from openlfr.server import create_app  # noqa: E402
from openlfr.web.security import Tokens  # noqa: E402
from openlfr.web.testing import fake_enroller  # noqa: E402

EXAMPLES = int(os.environ.get("OPENLFR_FUZZ_EXAMPLES", "8"))
SKIP = {"/api/stream"}


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    from argon2 import PasswordHasher

    from openlfr.governance import passwords
    from openlfr.store.db import close_all

    saved = passwords.HASHER, passwords._DUMMY
    passwords.HASHER, passwords._DUMMY = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1), None
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    w = make_world(url)
    d = w.active_deployment()
    w.alert(d, w.subjects[0])
    w.gov.create_user(w["administrator"], "everything", list(ROLES), PASSWORD)
    allrole = w.gov.login("everything", PASSWORD)
    app = create_app(url, w.clock, enroller=fake_enroller)
    tokens = Tokens(w.gov)
    env = {"app": app, "w": w, "tokens": tokens, "actor": allrole, "deployment": d,
           "worker": tokens.create(w["operator"], "worker", "fuzz", deployment_id=d)[0]}
    yield env
    passwords.HASHER, passwords._DUMMY = saved
    close_all()


def _check(case, env) -> None:
    if case.path.startswith("/api/worker/"):
        token = env["worker"]
    else:  # a fresh token each time: a generated logout or revocation cannot lock the run out
        token = env["tokens"].create(env["actor"], "api", "fuzz")[0]
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
    ctype = response.headers.get("content-type") or [""]
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if response.status_code >= 400 and ctype.startswith("application/json"):
        body = response.json()
        assert isinstance(body.get("detail"), str) and body.get("error"), body


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors(fuzz_env, mode):
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_env["app"])
    failures, ran = [], 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in SKIP:
            continue
        try:
            strategy = op.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
        except Exception as e:  # noqa: BLE001 - an operation with nothing to generate in this mode
            failures.append(f"{op.method.upper()} {op.path}: cannot generate ({e})")
            continue

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case):
            _check(case, fuzz_env)

        try:
            run()
            ran += 1
        except Unsatisfiable:  # negative mode: nothing in this operation can be made invalid
            continue
        except Exception as e:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{op.method.upper()} {op.path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    assert not failures, "\n".join(failures)
    assert ran >= (35 if mode == "positive" else 20)
