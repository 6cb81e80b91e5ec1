"""Aggregate per-seed metrics into the run summary (mean ± std over seeds) and its markdown table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import read_json, write_json


def _ms(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {"values": v.tolist(), "mean": float(v.mean()) if len(v) else float("nan"),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def summarize(results: dict[str, dict[int, dict]], root: str | Path) -> dict:
    """results[split][seed] = metrics.json content → summary with mean/std per split and method."""
    root = Path(root)
    out: dict = {"splits": {}}
    for split, by_seed in results.items():
        seeds = sorted(by_seed)
        ms = [by_seed[s] for s in seeds]
        row: dict = {"seeds": seeds, "num_unseen": ms[0]["num_unseen"], "chance": ms[0]["chance"]}
        for method in ("tdsm", "baseline"):
            if all(method in m for m in ms):
                row[method] = {
                    "zsl_top1": _ms([m[method]["zsl"]["top1"] for m in ms]),
                    "zsl_top5": _ms([m[method]["zsl"]["top5"] for m in ms]),
                }
                if all("gzsl" in m[method] for m in ms):
                    for key in ("seen", "unseen", "harmonic"):
                        row[method][f"gzsl_{key}"] = _ms([m[method]["gzsl"][key] for m in ms])
                        row[method][f"gzsl_{key}_uncalibrated"] = _ms(
                            [m[method]["gzsl"]["uncalibrated"][key] for m in ms])
        enc = []
        for s in seeds:
            p = root / split / f"seed{s}" / "encoder" / "config.json"
            if p.is_file():
                enc.append(read_json(p).get("val_accuracy", float("nan")))
        if enc:
            row["encoder_seen_acc"] = _ms(enc)
        out["splits"][split] = row
    return out


def _fmt(entry: dict | None) -> str:
    if not entry:
        return "—"
    if len(entry["values"]) > 1:
        return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"
    return f"{100 * entry['mean']:.1f}"


def summary_table(summary: dict) -> str:
    """Markdown table: TDSM vs baseline vs chance, ZSL top-1 per split, GZSL H, encoder seen acc."""
    lines = [
        "| split | unseen | chance | TDSM ZSL top-1 | baseline ZSL top-1 | TDSM GZSL H | baseline GZSL H "
        "| TDSM H (γ=0) | baseline H (γ=0) | encoder seen acc | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split, row in summary["splits"].items():
        t, b = row.get("tdsm", {}), row.get("baseline", {})
        lines.append(
            f"| {split} | {row['num_unseen']} | {100 * row['chance']:.1f} | {_fmt(t.get('zsl_top1'))} | "
            f"{_fmt(b.get('zsl_top1'))} | {_fmt(t.get('gzsl_harmonic'))} | {_fmt(b.get('gzsl_harmonic'))} | "
            f"{_fmt(t.get('gzsl_harmonic_uncalibrated'))} | {_fmt(b.get('gzsl_harmonic_uncalibrated'))} | "
            f"{_fmt(row.get('encoder_seen_acc'))} | {' '.join(map(str, row['seeds']))} |")
    lines.append("")
    lines.append("All numbers are percentages (mean ± sample std over seeds). GZSL H: harmonic mean of seen and "
                 "unseen accuracy with calibrated stacking, γ chosen on a labelled validation set (held-out "
                 "samples of seen AND unseen classes, never the test set); H (γ=0): uncalibrated.")
    return "\n".join(lines)


def write_summary(root: str | Path, summary: dict) -> None:
    from ..io import atomic_path

    root = Path(root)
    write_json(root / "summary.json", summary)
    with atomic_path(root / "summary.md") as tmp:
        tmp.write_text(summary_table(summary) + "\n")
