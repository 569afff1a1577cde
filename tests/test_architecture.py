"""The package's import rules (docs/DESIGN layers), checked on the source itself.

- a module imports its own layer or a layer below it;
- only ``governance`` imports ``store`` (besides the store itself): it is the one door to the data;
- ``api`` and ``console`` are siblings mounted by one app factory (``server``): neither imports
  the other, and what both use lies below them in ``web``, which imports neither;
- ``live`` hands typed records to a sink and never imports ``governance``.

Imports are read with ``ast`` (relative imports resolved), including those inside functions.
``KNOWN_DEBT`` lists the imports that break a rule today and are still to be moved; the test
fails on any new break, and on an entry of the list that no longer occurs (so the list only
shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import openlfr

PACKAGE_ROOT = Path(openlfr.__file__).resolve().parent

LAYERS = {
    "engine": 0,
    "store": 0,
    "watchlist": 1,
    "scoring": 1,  # the scoring model: numpy, used by watchlist, evaluate, live and governance
    "evaluate": 1,
    "live": 2,
    "governance": 2,
    "transparency": 3,
    "benchmarks": 3,
    "web": 4,  # what the API and the console share: sessions, permissions, the guard, enrolment
    "worker": 5,
    "api": 5,
    "console": 5,
    "server": 6,  # the app factory: mounts api and console side by side
    "cli": 7,
}
SIBLINGS_APART = {("api", "console"), ("console", "api"), ("live", "governance")}
# What the API and the console share lies below both, in ``web``, which imports neither of them.
SHARED_BELOW = {"web": {"api", "console", "server"}}

# (importing module, imported package): breaks of the rules that are still to be mended.
KNOWN_DEBT: set[tuple[str, str]] = set()


def _imports(path: Path) -> set[str]:
    """Top-level ``openlfr`` sub-packages that the module at ``path`` imports."""
    rel = path.relative_to(PACKAGE_ROOT).with_suffix("")
    parts = ["openlfr", *rel.parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
        package = parts
    else:
        package = parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    names = [f"{module}.{alias.name}" for alias in node.names]
                else:
                    names = [module]
            elif node.module:
                names = [node.module]
        for name in names:
            bits = name.split(".")
            if bits[0] == "openlfr" and len(bits) > 1 and bits[1] in LAYERS:
                found.add(bits[1])
    return found


def _breaks() -> dict[tuple[str, str], str]:
    breaks: dict[tuple[str, str], str] = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        rel = path.relative_to(PACKAGE_ROOT)
        if len(rel.parts) < 2 or rel.parts[0] not in LAYERS:
            continue
        own = rel.parts[0]
        module = ".".join(rel.with_suffix("").parts)
        for other in _imports(path) - {own}:
            why = None
            if other == "store" and own != "governance":
                why = "only governance imports the store"
            elif (own, other) in SIBLINGS_APART:
                why = f"{own} must not import {other}"
            elif other in SHARED_BELOW.get(own, ()):
                why = f"{own} is shared by what it must not import: {other}"
            elif LAYERS[other] > LAYERS[own]:
                why = f"{own} (layer {LAYERS[own]}) imports a layer above it: {other} ({LAYERS[other]})"
            if why:
                breaks[(module, other)] = why
    return breaks


def test_every_package_is_placed_in_a_layer():
    packages = {p.name for p in PACKAGE_ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"place these packages in LAYERS: {sorted(packages - set(LAYERS))}"


def test_import_rules_hold():
    breaks = _breaks()
    new = {k: v for k, v in breaks.items() if k not in KNOWN_DEBT}
    assert not new, "import rules broken:\n" + "\n".join(f"{m} -> {o}: {why}" for (m, o), why in sorted(new.items()))
    mended = KNOWN_DEBT - set(breaks)
    assert not mended, f"these no longer break a rule: remove them from KNOWN_DEBT: {sorted(mended)}"


def test_what_api_and_console_share_lies_below_both():
    """``web`` sits under ``api`` and ``console`` (so the layer rule alone already forbids the
    imports that ``SHARED_BELOW`` names), and the app factory sits above both."""
    for shared, users in SHARED_BELOW.items():
        assert all(LAYERS[shared] < LAYERS[u] for u in users), (shared, users)
    assert LAYERS["server"] > max(LAYERS["api"], LAYERS["console"])
    assert not [k for k in KNOWN_DEBT if k[0].split(".")[0] in SHARED_BELOW], "no debt is allowed here"
    # the check can fail: a module of ``web`` that imports the console (inside a function)
    fake = PACKAGE_ROOT / "web" / "__probe_for_test__.py"
    fake.write_text("def f():\n    from ..console import views\n", encoding="utf-8")
    try:
        assert _breaks().get(("web.__probe_for_test__", "console")) == "web is shared by what it must not import: console"
    finally:
        fake.unlink()


def test_the_reader_sees_relative_and_nested_imports(tmp_path):
    # the check must be able to fail: a module of ``api`` that imports the store inside a function
    fake = PACKAGE_ROOT / "api" / "routes" / "__probe_for_test__.py"
    fake.write_text("def f():\n    from ...store import db\n    from ...console import views\n", encoding="utf-8")
    try:
        assert _imports(fake) == {"store", "console"}
    finally:
        fake.unlink()


def test_the_package_does_not_import_pytest():
    """Test tooling stays in tests/: an installed openlfr never needs pytest."""
    users = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "pytest" or n.startswith("pytest.") or n.startswith("_pytest") for n in names):
                users.append(str(path.relative_to(PACKAGE_ROOT)))
    assert not users, f"these modules import pytest: {users}"
