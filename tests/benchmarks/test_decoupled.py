"""benchmarks/decoupled.py runs, checks both graphs against their references, and reports what it claims."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_the_decoupled_benchmark_checks_and_reports_both_graphs(tmp_path):
    from benchmarks import decoupled

    out = tmp_path / "d.json"
    assert decoupled.main(["--presets", "tiny", "--repeats", "1", "--cases", "1,5", "2,3", "--out", str(out)]) == 0
    (res,) = json.loads(out.read_text())
    assert [(c["B"], c["K"]) for c in res["cases"]] == [(1, 5), (2, 3)]
    for c in res["cases"]:
        assert c["teacher_check"]["against"] == c["student_check"]["against"] == "loop"  # small: the literal loop
        assert c["student_gflop"] < c["teacher_gflop"] and c["speedup"] > 0
    g = res["graphs"]
    assert g["student"]["weight_bytes"] < g["teacher"]["weight_bytes"]  # the text stream moved to the tables
    from benchmarks.problem import denoiser_config

    cfg = denoiser_config("tiny")
    D, L, depth = cfg.hidden_size, cfg.num_tokens, cfg.depth
    # text_kv (depth, L, 2D) + key_bias (1+L) + ada_x (depth, 6, D) + ada_final (2, D), float32
    assert g["student"]["table_bytes_per_class"] == 4 * (depth * L * 2 * D + 1 + L + depth * 6 * D + 2 * D)
    assert out.with_suffix(".md").read_text().startswith("| preset |")
    c = res["cases"][0]
    assert c["loop_ms"] > 0 and c["teacher_check"]["samples"] == 1  # the paper's loop timed beside the graphs
    for name in ("teacher", "student"):  # the Orin roofline from the counted FLOPs and bytes
        est = decoupled.orin_estimate_ms(
            c[f"{name}_gflop"], g[name]["weight_bytes"], g[name]["table_bytes_per_class"], 5
        )
        assert c[f"{name}_orin"] == est and est["ms"] == max(est["compute_ms"], est["memory_ms"]) > 0
    assert decoupled.orin_estimate_ms(20.0, 0, 0, 1)["compute_ms"] == pytest.approx(1.0)  # 20 GFLOP at 20 TFLOPS
    assert decoupled.orin_estimate_ms(0.0, 409_600_000, 0, 1)["memory_ms"] == pytest.approx(1.0)  # fp16 bytes
    # a reference on the first N samples only (for cases whose full reference takes minutes)
    argv = ["--presets", "tiny", "--repeats", "1", "--rounds", "1", "--warmup", "0", "--cases", "3,2"]
    assert decoupled.main(argv + ["--check-samples", "1", "--out", str(out)]) == 0
    (c,) = json.loads(out.read_text())[0]["cases"]
    assert c["teacher_check"]["samples"] == c["student_check"]["samples"] == 1 and "loop_ms" not in c
    with pytest.raises(SystemExit):
        decoupled.main(["--cases", "1"])
