"""The benchmark report (benchmarks/report.py) on a small synthetic pytest-benchmark JSON: speed-up
ratios, missing backends and references, plots, the CLI."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib")

from benchmarks import report  # noqa: E402
from tdsm_edge.errors import InputError  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (preset, K, J, B, backend, median seconds)
CASES = [
    ("tiny", 5, 3, 1, "reference", 0.020),
    ("tiny", 5, 3, 1, "onnxruntime", 0.004),
    ("tiny", 5, 3, 1, "folded-torch", 0.005),
    ("tiny", 12, 3, 1, "reference", 0.048),
    ("tiny", 12, 3, 1, "onnxruntime", 0.006),  # no folded-torch result for this case
    ("small", 5, 3, 1, "reference", 0.120),
    ("small", 5, 3, 1, "onnxruntime", 0.030),
    ("small", 24, 3, 64, "onnxruntime", 1.5),  # its reference was deselected (slow)
]


def bench_entry(preset, K, J, B, backend, median):
    return {
        "group": f"{preset} J={J} B={B} K={K}",
        "name": f"test_scoring[{preset}-K{K}-J{J}-B{B}-{backend}]",
        "extra_info": {
            "preset": preset,
            "K": K,
            "J": J,
            "B": B,
            "backend": backend,
            "threads": 1,
            "device": "cpu" if backend in ("reference", "folded-torch") else backend,
        },
        "stats": {"median": median, "mean": median, "min": median, "rounds": 7},
    }


def write_json(path, cases=CASES, extra=()):
    data = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}, "machine": "x86_64", "python_version": "3.11"},
        "commit_info": {"id": "abcdef1234567"},
        "datetime": "2026-11-27T00:00:00",
        "benchmarks": [bench_entry(*c) for c in cases] + list(extra),
    }
    path.write_text(json.dumps(data))
    return path


def test_ratios_are_reference_over_backend(tmp_path):
    results, context = report.load_results(write_json(tmp_path / "r.json"))
    table = report.speedups(results)
    tiny5 = table[("tiny", 3, 1, 5)]
    assert tiny5["reference"] == pytest.approx((20.0, 1.0))
    assert tiny5["onnxruntime"] == pytest.approx((4.0, 5.0))
    assert tiny5["folded-torch"] == pytest.approx((5.0, 4.0))
    assert table[("small", 3, 1, 5)]["onnxruntime"] == pytest.approx((30.0, 4.0))
    assert table[("small", 3, 64, 24)]["onnxruntime"] == (pytest.approx(1500.0), None)  # no reference: no ratio
    assert list(table)[:2] == [("tiny", 3, 1, 5), ("tiny", 3, 1, 12)]  # tiny before small, K ascending
    assert context["cpu"] == "Test CPU" and context["threads"] == [1]


def test_markdown_marks_missing_backends_and_references(tmp_path):
    results, context = report.load_results(write_json(tmp_path / "r.json"))
    md = report.format_markdown(results, context)
    assert "| J | B | K | reference ms | folded-torch ms (×) | onnxruntime ms (×) |" in md
    assert "| 3 | 1 | 5 | 20.0 | 5.00 (×4.0) | 4.00 (×5.0) |" in md
    assert "| 3 | 1 | 12 | 48.0 | — | 6.00 (×8.0) |" in md  # folded-torch missing in this case
    assert "| 3 | 64 | 24 | — | — | 1,500 (no ref.) |" in md
    assert "No results for: torch, tensorrt" in md  # never measured: named, no column
    assert "torch ms" not in md.replace("folded-torch ms", "")
    assert md.index("## tiny") < md.index("## small")


def test_cpu_target_line(tmp_path):
    target = {
        "name": "test_onnxruntime_meets_cpu_target",
        "stats": {"median": 0.01, "rounds": 40},
        "extra_info": {
            "target": {"preset": "small", "K": 5, "J": 3, "B": 1, "backend": "onnxruntime", "min_speedup": 3.0},
            "speedup": 2.5,
            "pairs": 40,
            "reference_median_ms": 25.0,
            "onnxruntime_median_ms": 10.0,
        },
    }
    results, context = report.load_results(write_json(tmp_path / "r.json", extra=[target]))
    assert len(results) == len(CASES)  # not a table case
    md = report.format_markdown(results, context)
    assert (
        "**CPU target** (small, B=1, K=5, J=3: onnxruntime ≥ 3× faster than the loop): NOT met, ×2.5 "
        "(10.00 vs 25.00 ms, medians over 40 interleaved pairs)." in md
    )


def test_foreign_and_duplicate_entries(tmp_path):
    other = {"name": "test_other", "extra_info": {}, "stats": {"median": 1.0, "rounds": 1}}
    later = bench_entry("tiny", 5, 3, 1, "onnxruntime", 0.002)
    results, _ = report.load_results(write_json(tmp_path / "r.json", extra=[other, later]))
    assert len(results) == len(CASES)  # the foreign one is left out
    assert report.speedups(results)[("tiny", 3, 1, 5)]["onnxruntime"] == pytest.approx((2.0, 10.0))  # later wins
    with pytest.raises(InputError, match="no scoring cases"):
        report.format_markdown([], {})
    with pytest.raises(InputError, match="cannot read"):
        report.load_results(tmp_path / "missing.json")


def test_plots_are_written(tmp_path):
    results, _ = report.load_results(write_json(tmp_path / "r.json"))
    png = report.plot_latency(results, tmp_path / "plots" / "latency.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    rows = [
        dict(J=J, t=25, K=5, n=500, top1=acc, latency_ms_b1=ms, device="cpu", threads=1)
        for J, acc, ms in ((3, 0.65, 2.2), (1, 0.61, 1.4), (5, 0.60, 5.0))
    ]
    acc = report.plot_accuracy(rows, tmp_path / "acc.png", "test")
    assert acc.read_bytes()[:8] == PNG_MAGIC
    md = report.format_accuracy(rows, "runs/x/ru5/seed1")
    assert md.index("| 1 | 61.0 | 1.4 |") < md.index("| 3 | 65.0 | 2.2 |")  # sorted by J


def test_cli_writes_markdown_and_skips_accuracy_without_run(tmp_path, capsys):
    out = tmp_path / "report"
    rc = report.main(
        [
            str(write_json(tmp_path / "r.json")),
            "--out",
            str(out),
            "--run",
            str(tmp_path / "no_run"),
            "--log-level",
            "WARNING",
        ]
    )
    assert rc == 0
    md = (out / "benchmarks.md").read_text()
    assert md == capsys.readouterr().out.rstrip("\n") + "\n"
    assert "Accuracy vs J: skipped" in md
    assert (out / "latency_vs_K.png").is_file() and not (out / "accuracy_vs_J.png").exists()
    assert report.main([str(tmp_path / "missing.json"), "--out", str(out)]) == 2


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        report.main(["--help"])
    text = capsys.readouterr().out
    assert "runs/demo/ru5/seed1" in text and "benchmarks/results" in text
