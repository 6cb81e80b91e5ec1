"""Aggregate per-seed metrics into the run summary (mean ± std over seeds) and its markdown table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import read_json, write_json
from .metrics import twins_told_apart


def _ms(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {
        "values": v.tolist(),
        "mean": float(v.mean()) if len(v) else float("nan"),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
    }


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
                if all("ablations" in m[method] for m in ms):
                    for key in ms[0][method]["ablations"]:
                        row[method][f"ablation_{key}"] = _ms([m[method]["ablations"][key] for m in ms])
                twins = [twins_told_apart(m[method]["zsl"]["confusion"], m[method]["zsl"]["class_names"]) for m in ms]
                if all(t is not None for t in twins):
                    row[method]["twins_told_apart"] = _ms(twins)
                if all("gzsl" in m[method] for m in ms):
                    for key in ("seen", "unseen", "harmonic"):
                        row[method][f"gzsl_{key}"] = _ms([m[method]["gzsl"][key] for m in ms])
                        row[method][f"gzsl_{key}_uncalibrated"] = _ms(
                            [m[method]["gzsl"]["uncalibrated"][key] for m in ms]
                        )
        if "tdsm" in row and "baseline" in row and len(seeds) > 1:
            row["welch"] = welch(row["tdsm"]["zsl_top1"]["values"], row["baseline"]["zsl_top1"]["values"])
        if all("test_feature_rank" in m for m in ms):
            row["feature_effective_rank"] = _ms([m["test_feature_rank"]["effective"] for m in ms])
            row["feature_dim"] = ms[0]["test_feature_rank"]["dim"]
        enc = []
        for s in seeds:
            p = root / split / f"seed{s}" / "encoder" / "config.json"
            if p.is_file():
                enc.append(read_json(p).get("val_accuracy", float("nan")))
        if enc:
            row["encoder_seen_acc"] = _ms(enc)
        out["splits"][split] = row
    return out


def welch(a: list[float], b: list[float]) -> dict:
    """Welch's t-test of mean(a) vs mean(b) (unequal variances): t, df and the two-sided p-value."""
    from scipy import stats

    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if not va + vb > 0:  # no spread in either group (or < 2 values): there is nothing to test
        return {"diff": float(np.mean(a) - np.mean(b)), "t": float("nan"), "df": float("nan"), "p": float("nan")}
    res = stats.ttest_ind(a, b, equal_var=False)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"diff": float(np.mean(a) - np.mean(b)), "t": float(res.statistic), "df": float(df), "p": float(res.pvalue)}


def _fmt(entry: dict | None) -> str:
    if not entry:
        return "—"
    if len(entry["values"]) > 1:
        return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"
    return f"{100 * entry['mean']:.1f}"


def summary_table(summary: dict) -> str:
    """Markdown table: TDSM vs baseline vs chance, ZSL top-1 per split, GZSL H, encoder seen acc."""
    lines = [
        "| split | unseen | chance | TDSM ZSL top-1 | baseline ZSL top-1 | Δ (Welch p) | TDSM / baseline twins "
        "told apart | TDSM GZSL H | baseline GZSL H | TDSM H (γ=0) | baseline H (γ=0) | encoder seen acc | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split, row in summary["splits"].items():
        t, b = row.get("tdsm", {}), row.get("baseline", {})
        w = row.get("welch")
        delta = (
            (f"{100 * w['diff']:+.1f} (p={w['p']:.2g})" if w["p"] == w["p"] else f"{100 * w['diff']:+.1f} (no spread)")
            if w
            else "—"
        )
        twins = (
            f"{_fmt(t.get('twins_told_apart'))} / {_fmt(b.get('twins_told_apart'))}" if "twins_told_apart" in t else "—"
        )
        lines.append(
            f"| {split} | {row['num_unseen']} | {100 * row['chance']:.1f} | {_fmt(t.get('zsl_top1'))} | "
            f"{_fmt(b.get('zsl_top1'))} | {delta} | {twins} | {_fmt(t.get('gzsl_harmonic'))} | "
            f"{_fmt(b.get('gzsl_harmonic'))} | {_fmt(t.get('gzsl_harmonic_uncalibrated'))} | "
            f"{_fmt(b.get('gzsl_harmonic_uncalibrated'))} | {_fmt(row.get('encoder_seen_acc'))} | "
            f"{' '.join(map(str, row['seeds']))} |"
        )
    ablated = {
        split: row["tdsm"] for split, row in summary["splits"].items() if "ablation_fc_mean" in row.get("tdsm", {})
    }
    if ablated:
        lines += [
            "",
            "| split | TDSM ZSL top-1 | global text fc → class mean | local text fl → class mean |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {split} | {_fmt(t['zsl_top1'])} | {_fmt(t['ablation_fc_mean'])} | {_fmt(t['ablation_fl_mean'])} |"
            for split, t in ablated.items()
        ]
    lines.append("")
    lines.append(
        "All numbers are percentages (mean ± sample std over seeds). Δ: TDSM minus baseline ZSL top-1, with "
        "the two-sided p of Welch's t-test over the seeds. Twins told apart: of the samples of classes that "
        "differ only by left/right (both unseen) given one of the two, the share given the right one (50 = "
        "a coin flip). GZSL H: harmonic mean of seen and unseen accuracy with calibrated stacking, γ chosen "
        "on a labelled validation set (held-out samples of seen AND unseen classes, never the test set); "
        "H (γ=0): uncalibrated."
    )
    return "\n".join(lines)


def write_summary(root: str | Path, summary: dict) -> None:
    from ..io import atomic_path

    root = Path(root)
    write_json(root / "summary.json", summary)
    with atomic_path(root / "summary.md") as tmp:
        tmp.write_text(summary_table(summary) + "\n")
