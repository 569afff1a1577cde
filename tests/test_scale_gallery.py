"""Large-gallery search: blocked exact and torch exact search against ``ExactIndex``; FAISS
(flat, HNSW, IVF) correctness and recall@1 against exact search; the synthetic gallery model."""

from __future__ import annotations

import numpy as np
import pytest

from openlfr.benchmarks.gallery import fallback_model, fit_model, load_model, recall_at_1, synthetic_gallery
from openlfr.watchlist.faiss_index import BlockedExactIndex, default_nlist
from openlfr.watchlist.index import ExactIndex, make_index, top_subjects


@pytest.fixture(scope="module")
def gallery():
    return synthetic_gallery(20_000, 400, seed=3)


@pytest.fixture(scope="module")
def reference(gallery):
    ex = ExactIndex()
    ex.add(gallery.templates, gallery.labels)
    return ex.search(gallery.probes, 5)


def test_synthetic_model_has_real_statistics():
    m = load_model()
    rng = np.random.default_rng(0)
    c = m.identities(4000, rng)
    a, b = m.faces(c, rng), m.faces(c, rng)
    genuine = np.median(np.linalg.norm(a - b, axis=1))
    impostor = np.median(np.linalg.norm(a[:2000] - b[2000:], axis=1))
    assert 0.35 < genuine < 0.5 and 0.7 < impostor < 1.0  # LFW: ~0.43 and ~0.82
    fb = fallback_model()
    c = fb.identities(2000, rng)
    assert 0.35 < np.median(np.linalg.norm(fb.faces(c, rng) - fb.faces(c, rng), axis=1)) < 0.5
    # fitting recovers a known within-person spread
    centres = rng.normal(0, 0.1, (300, 128))
    x = np.repeat(centres, 4, axis=0) + rng.normal(0, 0.02, (1200, 128))
    fitted = fit_model(x.astype(np.float32), np.repeat(np.arange(300), 4))
    assert np.allclose(np.diag(fitted.within @ fitted.within.T).mean(), 0.02**2, rtol=0.1)


def test_blocked_exact_matches_exact(gallery, reference):
    ex_d, ex_l = reference
    idx = make_index("exact-blocked", block=4096, probe_batch=128)  # several blocks and probe batches
    assert isinstance(idx, BlockedExactIndex)
    idx.add(gallery.templates[:10_000], gallery.labels[:10_000])
    idx.add(gallery.templates[10_000:], gallery.labels[10_000:])  # added in two goes
    for k in (1, 5):
        d, lab = idx.search(gallery.probes, k)
        assert np.array_equal(lab, ex_l[:, :k])
        assert np.allclose(d, ex_d[:, :k], atol=1e-5)
    d, lab = idx.search(gallery.probes[0], 1)  # one probe, 1-D
    assert lab.shape == (1, 1) and lab[0, 0] == ex_l[0, 0]
    # members find their own template most of the time at 30,000 identities
    members = gallery.probe_labels >= 0
    assert (ex_l[members, 0] == gallery.probe_labels[members]).mean() > 0.9


def test_blocked_exact_edges():
    idx = BlockedExactIndex(block=2)
    d, lab = idx.search(np.zeros((2, 128), np.float32), 3)
    assert np.isinf(d).all() and (lab == -1).all()
    t = np.eye(128, dtype=np.float32)[:3]
    idx.add(t, np.array([7, 8, 9]))
    d, lab = idx.search(t[1], 5)  # k beyond the gallery: padded
    assert list(lab[0]) == [8, 7, 9, -1, -1] and np.isinf(d[0, 3:]).all() and d[0, 0] == 0
    idx.add(t[1:2], np.array([42]))  # a duplicate template: the earlier one wins the tie
    assert idx.search(t[1], 1)[1][0, 0] == 8
    assert top_subjects(idx, t[:1], 2)[1].tolist() == [[7, 8]]
    with pytest.raises(ValueError):
        idx.add(np.full((1, 128), np.nan, np.float32), np.array([1]))
    with pytest.raises(ValueError):
        idx.search(t, 0)


def test_torch_exact_matches_exact(gallery, reference):
    pytest.importorskip("torch")
    ex_d, ex_l = reference
    idx = make_index("torch-exact", device="cpu", block=8192, probe_batch=256)
    idx.add(gallery.templates, gallery.labels)
    d, lab = idx.search(gallery.probes, 5)
    assert np.array_equal(lab, ex_l) and np.allclose(d, ex_d, atol=1e-5)
    idx.rerank_on_device = True  # the GPU's re-ranking path, run on the CPU
    d2, lab2 = idx.search(gallery.probes, 5)
    assert np.array_equal(lab2, ex_l) and np.allclose(d2, ex_d, atol=1e-5)
    low = make_index("torch-exact", device="cpu", precision="bf16", block=8192, rerank=8)
    low.add(gallery.templates, gallery.labels)
    d, lab = low.search(gallery.probes, 1)
    assert recall_at_1(ex_l[:, 0], lab[:, 0]) >= 0.99  # bf16 scores, fp32 re-ranking
    assert np.allclose(d[lab[:, 0] == ex_l[:, 0], 0], ex_d[lab[:, 0] == ex_l[:, 0], 0], atol=1e-5)
    with pytest.raises(ValueError):
        make_index("torch-exact", device="cpu", precision="fp8")


def test_faiss_flat_small_gallery_is_exact(gallery, reference):
    pytest.importorskip("faiss")
    ex = ExactIndex()
    ex.add(gallery.templates[:5000], gallery.labels[:5000])
    want_d, want_l = ex.search(gallery.probes, 3)
    idx = make_index("faiss", device="cpu")  # registered on first use
    idx.add(gallery.templates[:5000], gallery.labels[:5000] + 1000)
    assert idx.description == "Flat"
    d, lab = idx.search(gallery.probes, 3)
    assert np.array_equal(lab, want_l + 1000) and np.allclose(d, want_d, atol=1e-4)
    d, lab = idx.search(gallery.probes[:2], 6000)  # more than held: padded
    assert (lab[:, 5000:] == -1).all() and np.isinf(d[:, 5000:]).all()
    assert idx.memory_bytes() / len(idx) >= 512


def test_faiss_hnsw_recall_and_growth(gallery, reference):
    pytest.importorskip("faiss")
    _, ex_l = reference
    idx = make_index("faiss", device="cpu", flat_below=12_000, ef_search=256)
    idx.add(gallery.templates[:10_000], gallery.labels[:10_000])
    assert idx.description == "Flat"
    idx.add(gallery.templates[10_000:], gallery.labels[10_000:])  # outgrows the flat index
    assert idx.description == "HNSW32,Flat" and len(idx) == len(gallery.templates)
    d, lab = idx.search(gallery.probes, 1)
    assert recall_at_1(ex_l[:, 0], lab[:, 0]) >= 0.999
    single = np.array([idx.search(q, 1)[1][0, 0] for q in gallery.probes[:20]])
    assert np.array_equal(single, lab[:20, 0])  # batched probes = one at a time
    per = idx.memory_bytes() / len(idx)
    assert 512 < per < 1200  # vectors + graph links + labels
    d3, l3 = top_subjects(idx, gallery.probes[:5], 3)
    assert (l3 >= 0).all() and (np.diff(d3, axis=1) >= 0).all()


def test_faiss_ivf(gallery, reference):
    pytest.importorskip("faiss")
    _, ex_l = reference
    idx = make_index("faiss", factory="ivf", nlist=128, nprobe=128, device="cpu")
    idx.add(gallery.templates, gallery.labels)
    assert idx.description == "IVF128,Flat"
    _, lab = idx.search(gallery.probes, 1)
    assert recall_at_1(ex_l[:, 0], lab[:, 0]) == 1.0  # every list scanned: exhaustive
    idx.set_params(nprobe=8)
    _, lab8 = idx.search(gallery.probes, 1)
    assert 0.5 < recall_at_1(ex_l[:, 0], lab8[:, 0]) < 1.0  # fewer lists scanned: approximate
    idx.rebuild()
    assert len(idx) == len(gallery.templates)
    assert default_nlist(1_000_000) == 4096 and default_nlist(100) == 32
    with pytest.raises(ValueError, match="GPU"):
        make_index("faiss", device="cuda") if not _faiss_gpu() else pytest.skip("FAISS sees a GPU")


def _faiss_gpu() -> bool:
    from openlfr.watchlist.faiss_index import faiss_gpus

    return faiss_gpus() > 0


def test_unknown_kind_still_refused():
    with pytest.raises(ValueError, match="unknown index kind"):
        make_index("annoy")


def test_faiss_save_and_load(gallery, tmp_path):
    pytest.importorskip("faiss")
    from openlfr.watchlist.faiss_index import FaissIndex

    idx = FaissIndex(factory="HNSW16,Flat", ef_search=64, device="cpu")
    idx.add(gallery.templates[:3000], gallery.labels[:3000] + 7)
    want = idx.search(gallery.probes[:50], 2)
    idx.save(tmp_path / "g.faiss")
    back = FaissIndex.load(tmp_path / "g.faiss", ef_search=64, device="cpu")
    got = back.search(gallery.probes[:50], 2)
    assert len(back) == 3000 and np.array_equal(got[1], want[1]) and np.allclose(got[0], want[0])
    with pytest.raises(ValueError, match="empty"):
        FaissIndex(device="cpu").save(tmp_path / "none.faiss")
