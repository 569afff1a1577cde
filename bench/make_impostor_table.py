"""Make the impostor (non-mated distance) table that ``openlfr.watchlist.threshold`` reads.

    python bench/make_impostor_table.py [--data ../shared/data/lfw-dev] [--max-images 6200]

Each LFW dev image gives one face (HOG detector, upsample 1, the face nearest the image centre)
and two descriptors: flip-averaged (as references are enrolled) and plain (as live probes are).
Non-mated distances are reference(flip) x probe(plain) over all ordered pairs of images of
different people (LFW label errors, listed in SAME_PERSON, left out); p(t) is the fraction
below t on t = 0.200..0.800 step 0.005. Below the smallest t with 100 such pairs, p(t) is the
larger of the measured rate and an exponential tail fit. A direct check of
FPIR = 1 - (1 - p)^N samples N gallery identities and counts other people's images whose
nearest gallery distance is below t. Descriptors are cached in bench/out/ (reruns are instant).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GRID = np.round(np.arange(0.200, 0.8001, 0.005), 3)
RELIABLE_COUNT = 100  # pairs below t for the measured p(t) to stand alone (~10% error)
FIT_COUNT = 20  # pairs below t for a row to take part in the tail fit
CHECK_T = [0.35, 0.40, 0.45, 0.50, 0.55, 0.60]
# LFW label errors among the closest "non-mated" pairs (found by looking at the pairs below 0.32):
# pairs of these identities are left out (neither mated nor non-mated). Doubtful look-alikes stay in.
from openlfr.evaluate.lfw_errata import SAME_PERSON  # noqa: E402  (LFW's known label errors)


def list_images(root: Path) -> list[tuple[str, str]]:
    """(identity, path relative to root) for every image under root/images/<identity>/."""
    base = root / "images" if (root / "images").is_dir() else root
    out = []
    for ident in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in sorted(ident.iterdir()):
            if f.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                out.append((ident.name, str(f.relative_to(root))))
    return out


def compute_descriptors(root: Path, items: list[tuple[str, str]], cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    from openlfr.engine.images import ImageError, load_image
    from openlfr.engine.pipeline import FaceEngine

    done: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            for p, ok, a, b in zip(z["paths"], z["ok"], z["plain"], z["flip"]):
                done[str(p)] = (a, b) if ok else None
    todo = [p for _, p in items if p not in done]
    if not todo:
        return done
    engine = FaceEngine(detector="hog", upsample=1)
    t0 = time.time()
    for start in range(0, len(todo), 250):
        chunk = todo[start : start + 250]
        chips, names = [], []
        for rel in chunk:
            try:
                rgb = load_image(root / rel)
            except ImageError:
                done[rel] = None
                continue
            faces = engine.align(rgb, engine.detect(rgb))
            if not faces:
                done[rel] = None
                continue
            cy, cx = (rgb.shape[0] - 1) / 2, (rgb.shape[1] - 1) / 2
            f = min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2)
            chips.append(f.chip)
            names.append(rel)
        if chips:
            c = np.stack(chips)
            d = engine.descriptor.compute(np.concatenate([c, c[:, :, ::-1]]))
            plain, mirror = d[: len(c)], d[len(c) :]
            for i, rel in enumerate(names):
                done[rel] = (plain[i], (plain[i] + mirror[i]) / 2)
        _save(cache, done)
        n = start + len(chunk)
        print(f"  {n}/{len(todo)} images, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return done


def _save(cache: Path, done: dict) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    paths = sorted(done)
    z = np.zeros(128, np.float32)
    np.savez(
        cache,
        paths=np.array(paths),
        ok=np.array([done[p] is not None for p in paths]),
        plain=np.stack([done[p][0] if done[p] is not None else z for p in paths]).astype(np.float32),
        flip=np.stack([done[p][1] if done[p] is not None else z for p in paths]).astype(np.float32),
    )


def below_counts(ref: np.ndarray, probe: np.ndarray, ident: np.ndarray, mated: bool, block: int = 512) -> tuple[np.ndarray, int]:
    """Counts of ordered pairs (i != j) with distance < each GRID value; non-mated or mated."""
    hist = np.zeros(len(GRID) + 1, np.int64)
    total = 0
    for s in range(0, len(ref), block):
        r = ref[s : s + block]
        d = np.sqrt(np.maximum((r**2).sum(1)[:, None] + (probe**2).sum(1)[None] - 2 * r @ probe.T, 0))
        rows = ident[s : s + block]
        same = rows[:, None] == ident[None]
        mask = same if mated else ~same
        for a, b in SAME_PERSON:
            mask &= ~(((rows == a)[:, None] & (ident == b)[None]) | ((rows == b)[:, None] & (ident == a)[None]))
        if mated:
            mask[np.arange(len(r)), np.arange(s, s + len(r))] = False
        v = d[mask]
        total += v.size
        hist += np.bincount(np.searchsorted(GRID, v, side="right"), minlength=len(GRID) + 1)
    # d < GRID[g]  <=>  searchsorted(GRID, d, 'right') <= g
    return np.cumsum(hist)[: len(GRID)], total


def tail_fit(counts: np.ndarray, n: int) -> tuple[np.ndarray, float, list[float]]:
    """p(t), made cautious where few pairs were seen.

    An exponential tail, log p = a + b t, is fitted to the rows with at least FIT_COUNT pairs
    and p <= 1e-3. Below ``reliable_from`` (the smallest t with RELIABLE_COUNT pairs) p(t) is the
    larger of the measured rate and the fit, so it never drops to the noisy handful of pairs or
    to zero; the result is made non-decreasing by raising, never lowering, values.
    """
    p = counts / n
    rows = np.flatnonzero((counts >= FIT_COUNT) & (p <= 1e-3))
    coef = np.polyfit(GRID[rows], np.log(p[rows]), 1, w=np.sqrt(counts[rows]))
    reliable_from = float(GRID[np.flatnonzero(counts >= RELIABLE_COUNT)[0]])
    out = p.copy()
    low = GRID < reliable_from
    out[low] = np.maximum(p[low], np.exp(np.polyval(coef, GRID[low])))
    return np.maximum.accumulate(out), reliable_from, [float(c) for c in coef]


def direct_check(ref, probe, ident, p_of_t, n_gallery: int, reps: int, rng) -> dict:
    from openlfr.watchlist.index import ExactIndex

    people = np.unique(ident)
    hits = np.zeros(len(CHECK_T))
    probes_total = 0
    for _ in range(reps):
        gal = rng.choice(people, n_gallery, replace=False)
        rows = [rng.choice(np.flatnonzero(ident == g)) for g in gal]
        ix = ExactIndex()
        ix.add(ref[rows], np.arange(n_gallery))
        alias = {b for a, b in SAME_PERSON if a in gal} | {a for a, b in SAME_PERSON if b in gal}
        q = probe[~np.isin(ident, list(set(gal) | alias))]
        d, _ = ix.search(q, 1)
        hits += (d[:, 0][:, None] < np.array(CHECK_T)[None]).sum(0)
        probes_total += len(q)
    direct = hits / probes_total
    formula = [float(-np.expm1(n_gallery * np.log1p(-p_of_t(t)))) for t in CHECK_T]
    return {
        "n_gallery": n_gallery,
        "repetitions": reps,
        "probes": int(probes_total),
        "rows": [
            {"t": t, "direct": round(float(a), 6), "formula": round(b, 6), "alerts": int(h)}
            for t, a, b, h in zip(CHECK_T, direct, formula, hits)
        ],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "lfw-dev")
    ap.add_argument("--max-images", type=int, default=6200, help="random sample of images (all when larger)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "out" / "lfw_dev_descriptors.npz")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "openlfr" / "watchlist" / "data" / "impostor_table.json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    items = list_images(args.data)
    if len(items) > args.max_images:
        keep = np.sort(rng.choice(len(items), args.max_images, replace=False))
        items = [items[i] for i in keep]
    print(f"{len(items)} images from {args.data}", file=sys.stderr)
    desc = compute_descriptors(args.data, items, args.cache)
    used = [(who, rel) for who, rel in items if desc.get(rel) is not None]
    ident = np.array([who for who, _ in used])
    probe = np.stack([desc[rel][0] for _, rel in used]).astype(np.float32)
    ref = np.stack([desc[rel][1] for _, rel in used]).astype(np.float32)
    print(f"{len(used)} faces, {len(set(ident))} people", file=sys.stderr)

    counts, n = below_counts(ref, probe, ident, mated=False)
    mated_below, n_mated = below_counts(ref, probe, ident, mated=True)
    plain_counts, n_plain = below_counts(probe, probe, ident, mated=False)
    fmr, reliable_from, coef = tail_fit(counts, n)

    def p_of_t(t):
        return float(np.interp(t, GRID, fmr))

    checks = [direct_check(ref, probe, ident, p_of_t, ng, reps, rng) for ng, reps in ((100, 30), (800, 10))]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    try:
        data_name = "../" + str(args.data.resolve().relative_to(REPO.parent.resolve()))
    except ValueError:
        data_name = str(args.data)
    table = {
        "description": "Single-comparison false match rate p(t) = P(distance < t) between descriptors of different people",
        "provenance": {
            "dataset": data_name,
            "dataset_short": "LFW dev",
            "images_sampled": len(items),
            "faces": len(used),
            "people": int(len(set(ident))),
            "pairs": "ordered pairs of images of different people: reference (flip-averaged) x probe (plain)",
            "excluded_identity_pairs": [{"identities": list(k), "why": v} for k, v in SAME_PERSON.items()],
            "face": "HOG detector, upsample 1, the face nearest the image centre; dlib 5-point chip 150x150",
            "date": dt.date.today().isoformat(),
            "command": " ".join(["python bench/make_impostor_table.py", *(argv if argv is not None else sys.argv[1:])]),
            "commit": commit,
            "seed": args.seed,
        },
        "n_comparisons": int(n),
        "n_mated": int(n_mated),
        "reliable_from": reliable_from,
        "tail_fit": {
            "model": "below reliable_from: p = max(measured, exp(polyval(coef, t))), coef fitted to rows with >= fit_count pairs and p <= 1e-3",
            "coef": coef,
            "fit_count": FIT_COUNT,
            "reliable_count": RELIABLE_COUNT,
        },
        "thresholds": [float(t) for t in GRID],
        "counts": [int(c) for c in counts],
        "fmr_measured": [float(f"{c / n:.6g}") for c in counts],
        "fmr": [float(f"{v:.6g}") for v in fmr],
        "fmr_plain_vs_plain": [float(f"{c / n_plain:.6g}") for c in plain_counts],
        "fnmr": [float(f"{1 - c / n_mated:.6g}") for c in mated_below],
        "independence_assumption": (
            "FPIR(t, N) = 1 - (1 - p(t))^N treats a stranger's N comparisons as independent; "
            "direct_check measures FPIR on sampled galleries of N people (one flip-averaged image each) "
            "against all images of people not in the gallery"
        ),
        "direct_check": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}: {n:,} non-mated pairs, reliable from t={reliable_from}", file=sys.stderr)
    for t in (0.4, 0.5, 0.6):
        p = p_of_t(t)
        row = ", ".join(f"N={N}: {-np.expm1(N * np.log1p(-p)):.4g}" for N in (4, 874, 2829))
        print(f"t={t}: p={p:.4g}  FPIR {row}", file=sys.stderr)
    for c in checks:
        for r in c["rows"]:
            print(f"N={c['n_gallery']} t={r['t']}: direct {r['direct']:.4g} formula {r['formula']:.4g}", file=sys.stderr)


if __name__ == "__main__":
    main()
