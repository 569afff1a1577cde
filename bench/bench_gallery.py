"""Large-gallery search: 1,000,000 templates, top-1 per probe, exact and approximate.

    python bench/bench_gallery.py [--n 1000000] [--probes 2000] [--quick] [--out bench/out/gallery.json]

The templates are synthetic, drawn from a model fitted to real LFW descriptors
(``openlfr.benchmarks.gallery``: real mean and covariances, half the variance from real
people's positions); probes are other faces of gallery identities (members, half) and faces
of new identities (non-members). Measures, on this machine's CPU (and on a GPU when torch
sees one):

- exact search (``exact-blocked``, numpy): ms per probe by probe batch size;
- exact search on PyTorch (``torch-exact``): fp32, and bf16 scores (AMX on this CPU) with
  the best candidates of each block re-ranked in fp32;
- FAISS HNSW (``HNSW32,Flat``) by efSearch and IVF-Flat (``IVF4096,Flat``) by nprobe:
  build time, ms per probe batched and one probe at a time, recall@1 against exact search
  (all probes, members, non-members, and the probes exact search puts within the alert
  threshold), memory per template.

Writes one JSON object (default bench/out/gallery.json). Peak memory ~3 GB at 1M.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from openlfr.benchmarks.gallery import load_model, synthetic_gallery  # noqa: E402
from openlfr.watchlist.faiss_index import BlockedExactIndex, FaissIndex, TorchExactIndex  # noqa: E402

THRESHOLD = 0.6  # dlib's same-person distance: the probes that would alert at the default


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    r = fn(*a, **kw)
    return r, time.perf_counter() - t0


def recall(ref_rows: np.ndarray, rows: np.ndarray, members: np.ndarray, near: np.ndarray) -> dict:
    hit = ref_rows == rows
    return {"recall_at_1": round(float(hit.mean()), 5), "members": round(float(hit[members].mean()), 5),
            "non_members": round(float(hit[~members].mean()), 5),
            "within_threshold": round(float(hit[near].mean()), 5) if near.any() else None}


def per_probe_ms(index, probes: np.ndarray, batch: int) -> float:
    n = len(probes)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        index.search_rows(probes[s : s + batch], 1)
    return (time.perf_counter() - t0) * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="100,000 templates, 500 probes, fewer settings")
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--skip-ivf", action="store_true")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=128)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--ef-values", default=None, help="efSearch values (default 64,128,256,384,512)")
    ap.add_argument("--nprobe-values", default=None, help="IVF nprobe values (default 32,64,128,256,512)")
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "out" / "cache",
                    help="keep built HNSW graphs here and load them on later runs (same n, M, efConstruction)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "gallery.json")
    args = ap.parse_args()
    if args.quick:
        args.n, args.probes = 100_000, 500
    import faiss

    faiss.omp_set_num_threads(args.threads)
    res: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                             "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
                 "n_templates": args.n, "n_probes": args.probes, "dim": 128, "faiss": faiss.__version__}
    try:
        from openlfr.benchmarks.embed import cpu_name

        res["machine"]["cpu"] = cpu_name()
    except Exception:  # noqa: BLE001
        pass

    model = load_model()
    g, t_gen = timed(synthetic_gallery, args.n, args.probes, 0.5, 0, model)
    members = g.probe_labels >= 0
    rng = np.random.default_rng(5)
    i, j = rng.integers(0, args.n, (2, 20000))
    res["gallery"] = {"model": model.source, "generate_s": round(t_gen, 1),
                      "impostor_distance_pct_1_50_99": [round(float(x), 3) for x in np.percentile(
                          np.linalg.norm(g.templates[i] - g.templates[j], axis=1)[i != j], [1, 50, 99])]}
    print(f"gallery: {args.n} templates, {args.probes} probes in {t_gen:.1f} s", flush=True)

    # ---------------------------------------------------------------- exact (the reference)
    ex = BlockedExactIndex(block=32768, probe_batch=1024)
    _, t_add = timed(ex.add, g.templates, g.labels)
    (ref_d, ref_rows), t_all = timed(ex.search_rows, g.probes, 1)
    ref_d, ref_rows = ref_d[:, 0], ref_rows[:, 0]
    near = ref_d < THRESHOLD
    exact = {"add_s": round(t_add, 2), "bytes_per_template": round(ex.memory_bytes() / len(ex), 1), "ms_per_probe": {}}
    for batch, n in ((1, 8), (16, 64), (64, 256), (256, 1024), (1024, 2048)):
        n = min(n, args.probes)
        exact["ms_per_probe"][str(batch)] = round(per_probe_ms(ex, g.probes[:n], batch), 3)
        print(f"exact, batches of {batch}: {exact['ms_per_probe'][str(batch)]} ms/probe", flush=True)
    exact["member_probe_finds_its_identity"] = round(float((ref_rows[members] == g.probe_labels[members]).mean()), 4)
    exact["nearest_distance_median"] = {"members": round(float(np.median(ref_d[members])), 4),
                                        "non_members": round(float(np.median(ref_d[~members])), 4)}
    exact["probes_within_threshold"] = int(near.sum())
    res["exact_blocked"] = exact
    del ex
    gc.collect()

    # ---------------------------------------------------------------- exact on torch
    try:
        if args.skip_torch:
            raise ImportError("skipped")
        import torch

        torch.set_num_threads(args.threads)
        res["torch"] = {}
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for dev in devices:
            for prec in ("fp32", "bf16") if dev == "cpu" else ("fp32", "fp16"):
                ti = TorchExactIndex(device=dev, precision=prec, block=65536 if dev == "cpu" else 1 << 18,
                                     probe_batch=1024, rerank=8)
                ti.add(g.templates, g.labels)
                ti.search_rows(g.probes[:64], 1)  # warm-up
                (_, rows), t = timed(ti.search_rows, g.probes, 1)
                key = f"{dev}_{prec}"
                res["torch"][key] = {"ms_per_probe_batch_1024": round(t * 1000 / args.probes, 3),
                                     "bytes_per_template": round(ti.memory_bytes() / len(ti), 1),
                                     **recall(ref_rows, rows[:, 0], members, near)}
                print(f"torch {key}: {res['torch'][key]}", flush=True)
                del ti
                gc.collect()
    except ImportError as e:
        res["torch"] = "skipped" if str(e) == "skipped" else "not installed"

    # ---------------------------------------------------------------- FAISS
    def sweep(fi: FaissIndex, param: str, values: list[int]) -> list[dict]:
        out = []
        single = g.probes[: min(200, args.probes)]
        for v in values:
            fi.set_params(**{param: v})
            fi.search_rows(single[:16], 1)
            (_, rows), t = timed(fi.search_rows, g.probes, 1)
            t1 = per_probe_ms(fi, single, 1)
            row = {param: v, "ms_per_probe_batched": round(t * 1000 / args.probes, 4), "ms_single_probe": round(t1, 4),
                   **recall(ref_rows, rows[:, 0], members, near)}
            print(f"  {row}", flush=True)
            out.append(row)
        return out

    if not args.skip_hnsw:
        cached = args.cache / f"hnsw_n{args.n}_seed0_M{args.hnsw_m}_efc{args.ef_construction}.faiss"
        if args.cache and cached.exists():
            fi = FaissIndex.load(cached, device="cpu")
            t_build = json.loads(cached.with_suffix(".json").read_text())["build_s"]
            print(f"HNSW{args.hnsw_m} loaded from {cached} (built in {t_build:.0f} s)", flush=True)
        else:
            fi = FaissIndex(factory="auto", flat_below=0, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, device="cpu")
            _, t_build = timed(fi.add, g.templates, g.labels)
            print(f"HNSW{args.hnsw_m} built in {t_build:.0f} s", flush=True)
            if args.cache:
                args.cache.mkdir(parents=True, exist_ok=True)
                fi.save(cached)
                cached.with_suffix(".json").write_text(json.dumps({"build_s": t_build}))
        values = [64, 128, 256] if args.quick else [64, 128, 256, 384, 512]
        values = [int(v) for v in args.ef_values.split(",")] if args.ef_values else values
        res["faiss_hnsw"] = {"factory": f"HNSW{args.hnsw_m},Flat", "ef_construction": args.ef_construction, "build_s": round(t_build, 1),
                             "bytes_per_template": round(fi.memory_bytes() / len(fi), 1), "sweep": sweep(fi, "ef_search", values)}
        del fi
        gc.collect()

    if not args.skip_ivf:
        fi = FaissIndex(factory="ivf", device="cpu")
        _, t_build = timed(fi.add, g.templates, g.labels)
        print(f"{fi.description} built in {t_build:.0f} s", flush=True)
        values = [32, 128] if args.quick else [32, 64, 128, 256, 512]
        values = [int(v) for v in args.nprobe_values.split(",")] if args.nprobe_values else values
        res["faiss_ivf"] = {"factory": fi.description, "build_s": round(t_build, 1),
                            "bytes_per_template": round(fi.memory_bytes() / len(fi), 1), "sweep": sweep(fi, "nprobe", values)}
        del fi
        gc.collect()

    res["peak_rss_mb"] = round(rss_mb(), 1)
    res["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
