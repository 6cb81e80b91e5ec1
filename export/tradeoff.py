"""Accuracy / latency trade-off of the reduced evaluations: noises J, timestep t, staged pruning keep.

For each setting `(J, t, keep)`, on a trained seed folder (runs/<name>/<split>/seed<k>):
    top1       unseen-class top-1 on the seed's ztest features, scored by the edge path
               (`FoldedScorer` + class tables, wrapped in `PrunedScorer`), fp32, with the run's noise
               bank (eval.noise_seed, or the model seed): at (J=3, t=25, keep=K) it reproduces
               metrics.json's top-1
    latency    median wall time of ONE scoring call (features → (B, K) errors; tables precomputed,
               the encoder not included) for each batch size, on `device` with `threads` torch threads

Run: python -m export.tradeoff --run runs/demo_seeds/ru5/seed1 --png docs/tradeoff_ru5_seed1.png
"""

from __future__ import annotations

import argparse
import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdsm_edge.errors import DataError, InputError
from tdsm_edge.models.class_tables import class_tables
from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.timing import median_ms

from .pruning import PrunedScorer

log = logging.getLogger(__name__)

GRID_J, GRID_T = (1, 3, 5), (10, 25, 40)


@dataclass
class SeedProblem:
    """What a trade-off measurement needs from one trained seed."""

    model: Any  # TDSMDenoiser (eval)
    schedule: Any  # DDPMSchedule
    stats: Any  # FeatureStats
    text: Any  # ClassText of the K unseen classes, in score order
    z: np.ndarray  # (N, Dz) float32 raw unseen-class test features
    labels: np.ndarray  # (N,) int64 local labels in [0, K)
    noise_seed: int


def default_configs(
    K: int, noises: Sequence[int] = GRID_J, timesteps: Sequence[int] = GRID_T, keeps: Sequence[int] | None = None
) -> list[tuple[int, int, int]]:
    """(J, t, keep) grid; keep defaults to (K, 3, 2). J = 1 with keep < K is left out: stage 2 would
    rescore with the same single noise, so it is keep = K's ranking (and cost) again."""
    keeps = (K, 3, 2) if keeps is None else keeps
    keeps = sorted({min(int(k), K) for k in keeps}, reverse=True)
    return [(J, t, k) for J in noises for t in timesteps for k in keeps if not (J == 1 and k < K)]


def load_seed_problem(
    run_seed_dir: str | Path, device: str = "cpu", denoiser_dir: str | Path | None = None
) -> SeedProblem:
    """Denoiser, unseen class text and ztest features of a trained seed folder (`denoiser_dir`: another
    denoiser on the same features, e.g. a distilled student's; default the seed's own)."""
    from tdsm_edge.config import load_config, noise_seed
    from tdsm_edge.models.folders import load_denoiser
    from tdsm_edge.text.prompts import ClassText
    from tdsm_edge.training.split_data import seed_features, split_classes

    seed_dir = Path(run_seed_dir)
    if not (seed_dir / "denoiser").is_dir():
        raise DataError(
            f"{str(seed_dir)!r} is not a trained seed folder (runs/<name>/<split>/seed<k> with "
            "denoiser/); train one with python -m tdsm_edge.train."
        )
    root, split = seed_dir.parent.parent, seed_dir.parent.name
    model, schedule, stats, cfg = load_denoiser(Path(denoiser_dir or seed_dir / "denoiser"), device)
    train_seed = cfg.train.seed  # this seed folder's model seed (the run's config.yaml holds the default one)
    if (root / "config.yaml").is_file():  # what python -m tdsm_edge.evaluate uses
        cfg = load_config(root / "config.yaml")
    text = ClassText.load(root / "text" / "class_text.safetensors")
    unseen, _ = split_classes(cfg.data.dataset, split)
    feats = seed_features(cfg, seed_dir, unseen, len(text.names))
    lookup = {int(c): i for i, c in enumerate(unseen)}
    labels = np.array([lookup[int(y)] for y in feats.z_label], np.int64)
    return SeedProblem(
        model,
        schedule,
        stats,
        text.subset(unseen),
        np.asarray(feats.ztest, np.float32),
        labels,
        noise_seed(cfg.eval, train_seed),
    )


def measure_tradeoff(
    run_seed_dir: str | Path | SeedProblem,
    configs: Sequence[tuple[int, int, int]] | None = None,
    device: str = "cpu",
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 20,
    threads: int = 1,
    eval_batch: int = 256,
) -> list[dict]:
    """Top-1 and median latency for each `(J, t, keep)` (default: `default_configs(K)`).

    Args:
        run_seed_dir: a trained seed folder (or an already loaded SeedProblem).
        configs: (J, t, keep) triples; keep >= K means no pruning.
        device: torch device; batch_sizes: latency batch sizes (samples taken from ztest, tiled
            if there are fewer); repeats: timed calls per batch size (after 2 warm-up calls);
        threads: torch intra-op threads while measuring (restored afterwards).
    Returns:
        One dict per config: J, t, keep, K, rows_per_sample, top1, n, `latency_ms_b<B>` per batch
        size, label, and the measurement context (device, threads, precision, torch, machine).
    """
    from tdsm_edge.scoring import noise_bank

    prob = run_seed_dir if isinstance(run_seed_dir, SeedProblem) else load_seed_problem(run_seed_dir, device)
    K, Dz = prob.text.num_classes, prob.z.shape[1]
    configs = default_configs(K) if configs is None else [tuple(int(v) for v in c) for c in configs]
    if repeats < 1 or any(b < 1 for b in batch_sizes):
        raise InputError(f"repeats and batch sizes must be >= 1, got {repeats}, {list(batch_sizes)}")
    if not 1 <= threads <= 1024:
        raise InputError(f"threads must lie in [1, 1024], got {threads}")
    model = prob.model.to(device).eval()
    fc, fl, mask = (
        torch.from_numpy(np.ascontiguousarray(a)).to(device)
        for a in (prob.text.global_, prob.text.local, prob.text.mask)
    )
    z_all = torch.from_numpy(prob.z).to(device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    results, tables_at = [], {}
    try:
        for J, t, keep in configs:
            if t not in tables_at:
                tables_at[t] = class_tables(model, fc, fl, mask, t)
            tables = tables_at[t]
            scorer = FoldedScorer(model, prob.schedule, noise_bank(J, Dz, prob.noise_seed), t, prob.stats).to(device)
            pruned = PrunedScorer(scorer.eval(), keep).eval()
            with torch.no_grad():
                errors = torch.cat(
                    [pruned(z_all[i : i + eval_batch], **tables) for i in range(0, len(z_all), eval_batch)]
                )
            top1 = float((errors.argmin(1).cpu().numpy() == prob.labels).mean())
            k = min(keep, K)
            row = dict(
                J=J,
                t=t,
                keep=k,
                K=K,
                rows_per_sample=K * J if k >= K or J == 1 else K + k * J,
                top1=top1,
                n=int(len(prob.labels)),
                label=f"J{J} t{t} keep{k}",
            )
            for B in batch_sizes:
                zb = z_all[torch.arange(B, device=device) % len(z_all)]  # (B, Dz)
                row[f"latency_ms_b{B}"] = _median_ms(lambda p=pruned, x=zb, tab=tables: p(x, **tab), repeats, device)
            row.update(
                device=str(device),
                threads=threads,
                precision="fp32",
                torch=torch.__version__,
                machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
            )
            log.info(
                "%s: top-1 %.3f, %s",
                row["label"],
                top1,
                ", ".join(f"B={B} {row[f'latency_ms_b{B}']:.2f} ms" for B in batch_sizes),
            )
            results.append(row)
    finally:
        torch.set_num_threads(before)
    return results


def _median_ms(call, repeats: int, device: str) -> float:
    """Median ms of `call()` after two warm-up calls, synchronised on CUDA."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else None
    with torch.no_grad():
        return median_ms(call, repeats, warmup=2, sync=sync)


def plot_tradeoff(results: Sequence[dict], png: str | Path, title: str | None = None) -> Path:
    """Unseen top-1 against median latency, one panel per measured batch size; colour = J,
    marker = keep, each point labelled with its t (and J, keep in the legend)."""
    from tdsm_edge.figures import new_figure, save_png

    if not results:
        raise InputError("plot_tradeoff needs at least one result")
    batches = sorted(int(k[len("latency_ms_b") :]) for k in results[0] if k.startswith("latency_ms_b"))
    if not batches:
        raise InputError("the results hold no latency_ms_b<B> entries; produce them with measure_tradeoff")
    K = results[0]["K"]
    Js = sorted({r["J"] for r in results})
    keeps = sorted({r["keep"] for r in results}, reverse=True)
    markers = dict(zip(keeps, "osD^vP"))
    from matplotlib.ticker import FuncFormatter

    fig = new_figure(5.2 * len(batches), 4.6)
    for p, B in enumerate(batches):
        ax = fig.add_subplot(1, len(batches), p + 1)
        for i, J in enumerate(Js):
            for keep in keeps:
                pts = [r for r in results if r["J"] == J and r["keep"] == keep]
                if not pts:
                    continue
                xs = [r[f"latency_ms_b{B}"] for r in pts]
                ys = [100 * r["top1"] for r in pts]
                ax.scatter(
                    xs,
                    ys,
                    color=f"C{i}",
                    marker=markers[keep],
                    s=36,
                    label=f"J={J}, keep={'all' if keep >= K else keep}",
                )
                for x, y, r in zip(xs, ys, pts):
                    ax.annotate(f"t{r['t']}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 2, 3, 40 rather than 2×10⁰
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(f"median latency per call, B={B} (ms, log)")
        ax.set_ylabel("unseen top-1 (%)")
        ax.set_title(f"batch {B}")
        ax.grid(True, alpha=0.3, which="both")
    r0 = results[0]
    fig.suptitle(
        title
        or f"TDSM reduced evaluations: K={K} unseen classes, n={r0['n']} test samples; "
        f"torch {r0['precision']} folded scorer, {r0['device']} × {r0['threads']} thread(s)",
        fontsize=10,
    )
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(labels), 4),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.08),
    )
    fig.tight_layout()
    return save_png(fig, png)


def format_table(results: Sequence[dict]) -> str:
    """Markdown table of the results (top-1 in %, latency in ms)."""
    batches = sorted(int(k[len("latency_ms_b") :]) for k in results[0] if k.startswith("latency_ms_b"))
    head = "| J | t | keep | rows/sample | top-1 % | " + " | ".join(f"ms B={B}" for B in batches) + " |"
    lines = [head, "|" + "---|" * (5 + len(batches))]
    for r in results:
        keep = f"{r['keep']} (all)" if r["keep"] >= r["K"] else str(r["keep"])
        lat = " | ".join(f"{r[f'latency_ms_b{B}']:.2f}" for B in batches)
        lines.append(f"| {r['J']} | {r['t']} | {keep} | {r['rows_per_sample']} | {100 * r['top1']:.1f} | {lat} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tdsm_edge.cli import HelpFormatter, run_main, setup_logging
    from tdsm_edge.io import write_json

    p = argparse.ArgumentParser(prog="python -m export.tradeoff", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--run", required=True, help="trained seed folder, e.g. runs/demo_seeds/ru5/seed1")
    p.add_argument("--png", required=True, help="output plot")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per batch size")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="torch device")
    args = p.parse_args(argv)
    setup_logging()

    def body() -> None:
        results = measure_tradeoff(args.run, device=args.device, repeats=args.repeats, threads=args.threads)
        plot_tradeoff(results, args.png)
        if args.json:
            write_json(args.json, results)
        print(format_table(results))

    return run_main(body, log, interrupted="interrupted; nothing was written")


if __name__ == "__main__":
    from tdsm_edge.cli import exit_main

    exit_main(main())
