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
    with pytest.raises(SystemExit):
        decoupled.main(["--cases", "1"])
