"""bench/gpu.py in quick CPU mode: every section's code path runs and writes its JSON and the
RESULTS.md block (the GPU figures themselves need a GPU machine)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_gpu_bench_quick_on_cpu(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCH))
    import gpu

    out, md = tmp_path / "gpu.json", tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nCPU figures stay.\n")
    assert gpu.main(["--device", "cpu", "--quick", "--out", str(out), "--results", str(md), "--cameras", "2"]) == 0
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["quick"] is True
    d = res["descriptors"]
    assert set(d["faces_per_s"]) == {"fp32", "bf16"} and all(v > 0 for v in d["faces_per_s"]["fp32"].values())
    assert d["accuracy_vs_fp32"]["bf16"]["max_l2"] < 0.05
    m = res["mmod"]
    assert m["frames_per_s"]["up0_fp32_batch1"] > 0
    assert m["boxes"]["up0_fp32"]["torch"] == m["boxes"]["up0_fp32"]["onnx"] == m["boxes"]["up0_fp32"]["matched_iou_0.9"]
    e = res["end_to_end"]["fast"][0]
    assert e["cameras"] == 2 and e["frames"] == 2 * 6 and e["fps_total"] > 0
    # through the processes shape: camera processes around the inference service
    assert res["end_to_end"]["shape"] == e["shape"] == "processes" and e["processes"] >= 1 and e["restarts"] == 0
    assert e["service"]["faces"] == e["embedded"] and e["gpu_utilisation"] is None  # (no GPU here)
    assert res["gallery"]["fp32"]["recall_at_1_vs_exact"] == 1.0
    c = res["device_chips"]  # chips cut "on the device" (here the CPU) from decoded frames
    assert c["decoder"] in ("pyav", "opencv") and c["max_pixel_diff_vs_exact_chips"] <= 2
    assert c["descriptor_distance_vs_exact_chips"] < 0.01 and c["faces_per_s_fp32_chips_from_decoded_frames"] > 0
    text = md.read_text()
    assert "CPU figures stay." in text and gpu.MARK_BEGIN in text and "Quick mode" in text
    assert "shape `processes`" in text
    # a second run replaces the block instead of adding one
    gpu.update_results(md, gpu.results_markdown(res))
    assert md.read_text().count(gpu.MARK_BEGIN) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_bench_end_to_end_with_retina_in_the_service(tmp_path):
    """``--detector retina``: the end-to-end run's RetinaFace is the inference service's, for all
    cameras (what the next GPU session measures)."""
    sys.path.insert(0, str(BENCH))
    import gpu

    out, md = tmp_path / "gpu.json", tmp_path / "RESULTS.md"
    assert gpu.main(["--device", "cpu", "--quick", "--out", str(out), "--results", str(md), "--cameras", "2",
                     "--skip", "descriptors,mmod,chips,gallery", "--detector", "retina"]) == 0
    e = json.loads(out.read_text())["end_to_end"]
    assert e["detector"].startswith("retina") and e["fast"][0]["frames"] == 2 * 6
    svc = e["fast"][0]["service"]
    assert svc["detect_images"] > 0 and 0 < svc["detect_batches"] <= svc["detect_images"]
    assert "detector retina" in md.read_text()
