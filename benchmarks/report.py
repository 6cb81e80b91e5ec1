"""Report of a scoring-benchmark run: a markdown table of median latencies and speed-ups, and plots.

    python -m pytest benchmarks/ -m "not slow" --benchmark-json results.json
    python -m benchmarks.report results.json --out docs/benchmarks

Writes (and prints) DIR/benchmarks.md: per preset, the median ms of one scoring call for each case
(J, B, K) and backend, with the speed-up over the paper's loop measured in the same run
(reference median / backend median). DIR/latency_vs_K.png: median ms against K, one panel per
(preset, J, B), one line per backend. DIR/accuracy_vs_J.png: unseen-class top-1 against the number
of noises J on a trained synthact run (`--run`; `export.tradeoff` scores it with the folded scorer),
skipped with a note when the run folder does not exist.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tdsm_edge.errors import InputError
from tdsm_edge.io import read_user_file

log = logging.getLogger(__name__)

REFERENCE = "reference"
BACKEND_ORDER = (REFERENCE, "folded-torch", "onnxruntime", "torch", "tensorrt")
PRESET_ORDER = ("tiny", "small", "paper")
DEFAULT_RUN = "runs/demo/ru5/seed1"
DEFAULT_NOISES = (1, 2, 3, 5, 8)
_KEYS = ("preset", "K", "J", "B", "backend")


@dataclass(frozen=True)
class Result:
    """One benchmark: a scoring call of `backend` on case (preset, K, J, B)."""

    preset: str
    K: int
    J: int
    B: int
    backend: str
    median_ms: float
    rounds: int

    @property
    def case(self) -> tuple[str, int, int, int]:
        """(preset, J, B, K): the table's row order."""
        return self.preset, self.J, self.B, self.K


def load_results(path: str | Path) -> tuple[list[Result], dict]:
    """The scoring results of a `--benchmark-json` file, and its context (machine, date, commit).

    Benchmarks without preset / K / J / B / backend in `extra_info` (other suites) are left out.
    """
    path = Path(path)
    how = "write them with python -m pytest benchmarks/ --benchmark-json results.json"
    try:
        data = json.loads(read_user_file(path, "benchmark results", InputError).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise InputError(
            f"cannot read benchmark results {str(path)!r} ({type(e).__name__}: {str(e)[:100]}); {how}"
        ) from e
    except InputError as e:  # missing, a folder, a FIFO
        raise InputError(f"cannot read {e}; {how}") from e
    if not isinstance(data, dict):
        raise InputError(f"benchmark results {str(path)!r} are not a pytest-benchmark json object; {how}")
    results, seen = [], {}
    targets = []
    for b in data.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "target" in info and "speedup" in info:  # benchmarks/test_cpu_target.py: paired timings
            targets.append(info)
            continue
        if not all(k in info for k in _KEYS):
            log.info("skipping %s: no %s in extra_info", b.get("name"), "/".join(_KEYS))
            continue
        r = Result(
            str(info["preset"]),
            int(info["K"]),
            int(info["J"]),
            int(info["B"]),
            str(info["backend"]),
            1e3 * float(b["stats"]["median"]),
            int(b["stats"]["rounds"]),
        )
        key = (*r.case, r.backend)
        if key in seen:
            log.warning("%s appears twice in %s; keeping the later result", b.get("name"), path)
            results.remove(seen[key])
        seen[key] = r
        results.append(r)
    machine = data.get("machine_info", {})
    context = dict(
        cpu=(machine.get("cpu") or {}).get("brand_raw") or machine.get("processor") or "?",
        machine=machine.get("machine", "?"),
        python=machine.get("python_version", "?"),
        datetime=data.get("datetime", "?"),
        commit=(data.get("commit_info") or {}).get("id", "?"),
        threads=sorted(
            {b["extra_info"]["threads"] for b in data.get("benchmarks", []) if "threads" in b.get("extra_info", {})}
        ),
        devices=sorted(
            {
                b["extra_info"]["device"]
                for b in data.get("benchmarks", [])
                if b.get("extra_info", {}).get("backend") in (REFERENCE, "folded-torch", "torch")
                and "device" in b["extra_info"]
            }
        ),
        targets=targets,
    )
    return results, context


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """`values` deduplicated: those in `preferred` in its order, then the rest sorted."""
    present = set(values)
    return [v for v in preferred if v in present] + sorted(present - set(preferred))


def backends_of(results: Sequence[Result]) -> list[str]:
    """The backends with at least one result, reference first."""
    return _order([r.backend for r in results], BACKEND_ORDER)


def speedups(results: Sequence[Result]) -> dict[tuple, dict[str, tuple[float, float | None]]]:
    """case (preset, J, B, K) → {backend: (median ms, reference median / backend median or None)}.

    The ratio is None where the case has no reference result (it was deselected or failed).
    """
    table: dict[tuple, dict[str, tuple[float, float | None]]] = {}
    for r in results:
        table.setdefault(r.case, {})[r.backend] = (r.median_ms, None)
    for row in table.values():
        ref = row.get(REFERENCE)
        for backend, (ms, _) in row.items():
            row[backend] = (ms, ref[0] / ms if ref is not None and ms > 0 else None)
    return dict(sorted(table.items(), key=lambda kv: (_rank(kv[0][0], PRESET_ORDER), *kv[0][1:])))


def _rank(value: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), value)


def format_markdown(results: Sequence[Result], context: dict) -> str:
    """One table per preset: median ms per call, and ×speed-up over the reference in the same run."""
    if not results:
        raise InputError(
            "the benchmark results hold no scoring cases (preset/K/J/B/backend in extra_info); were "
            "they written by python -m pytest benchmarks/ --benchmark-json?"
        )
    backends = backends_of(results)
    others = [b for b in backends if b != REFERENCE]
    table = speedups(results)
    lines = [
        "# Zero-shot scoring latency",
        "",
        "Median wall time of one scoring call (raw features `(B, Dz)` → errors `(B, K)`), in ms; `×n` is the "
        "speed-up over the paper's loop (`reference`: J × K denoiser forwards, torch fp32) measured in the same "
        "run. Every backend's scores were checked against the reference's (fp32 tolerance, argmin).",
        "",
        f"Machine: {context['cpu']} ({context['machine']}), Python {context['python']}; threads per backend: "
        f"{', '.join(map(str, context['threads'])) or '?'}; torch device: {', '.join(context['devices']) or '?'}; "
        f"run {context['datetime']}, commit {str(context['commit'])[:10]}.",
    ]
    missing = [b for b in BACKEND_ORDER if b not in backends]
    if missing:
        lines.append(f"No results for: {', '.join(missing)} (skipped: not available in this build or not installed).")
    for t in context.get("targets", []):
        g = t["target"]
        met = "met" if t["speedup"] >= g["min_speedup"] else "NOT met"
        lines += [
            "",
            f"**CPU target** ({g['preset']}, B={g['B']}, K={g['K']}, J={g['J']}: onnxruntime ≥ "
            f"{g['min_speedup']:g}× faster than the loop): {met}, ×{t['speedup']:.1f} "
            f"({t['onnxruntime_median_ms']:.2f} vs {t['reference_median_ms']:.2f} ms, medians over "
            f"{t['pairs']} interleaved pairs).",
        ]
    for preset in _order([c[0] for c in table], PRESET_ORDER):
        lines += [
            "",
            f"## {preset}",
            "",
            "| J | B | K | "
            + " | ".join([f"{REFERENCE} ms"] * (REFERENCE in backends) + [f"{b} ms (×)" for b in others])
            + " |",
            "|" + "---:|" * (3 + len(backends)),
        ]
        for (p, J, B, K), row in table.items():
            if p != preset:
                continue
            cells = [_cell(row.get(b), ratio=b != REFERENCE) for b in backends]
            lines.append(f"| {J} | {B} | {K} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(entry: tuple[float, float | None] | None, ratio: bool) -> str:
    if entry is None:
        return "—"
    ms, r = entry
    text = f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"
    if ratio:
        text += f" (×{r:.1f})" if r is not None else " (no ref.)"
    return text


def plot_latency(results: Sequence[Result], png: str | Path) -> Path:
    """Median ms against K (log-log), one panel per (preset, J, B), one line per backend."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    from tdsm_edge.figures import new_figure, save_png

    if not results:
        raise InputError("plot_latency needs at least one result")
    presets = _order([r.preset for r in results], PRESET_ORDER)
    combos = sorted({(r.J, r.B) for r in results})
    backends = backends_of(results)
    Ks = sorted({r.K for r in results})
    fig = new_figure(3.6 * len(combos), 3.1 * len(presets))
    for i, preset in enumerate(presets):
        for j, (J, B) in enumerate(combos):
            ax = fig.add_subplot(len(presets), len(combos), i * len(combos) + j + 1)
            if not any((r.preset, r.J, r.B) == (preset, J, B) for r in results):  # e.g. slow cases deselected
                ax.axis("off")
                ax.text(
                    0.5,
                    0.5,
                    f"{preset}, J={J}, B={B}:\nnot measured in this run",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="0.4",
                    transform=ax.transAxes,
                )
                continue
            for c, backend in enumerate(backends):
                pts = sorted(
                    (r.K, r.median_ms) for r in results if (r.preset, r.J, r.B, r.backend) == (preset, J, B, backend)
                )
                if pts:
                    ax.plot(
                        *zip(*pts),
                        marker="o",
                        ms=4,
                        color=f"C{c}",
                        label=backend,
                        linestyle="--" if backend == REFERENCE else "-",
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(Ks[0] / 1.3, Ks[-1] * 1.3)  # the same K axis in every panel, even with one point
            ax.set_xticks(Ks, [str(k) for k in Ks])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # labelled ticks even within one decade
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{preset}, J={J}, B={B}", fontsize=9)
            ax.grid(True, alpha=0.3, which="both")
            ax.set_xlabel("K classes", fontsize=8)
            if j == 0:
                ax.set_ylabel("median ms per call")
    handles = {h.get_label(): h for ax in fig.axes for h in ax.get_lines()}
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.04),
    )
    fig.suptitle("Zero-shot scoring latency (lower is better; dashed: the paper's loop)", fontsize=10)
    fig.tight_layout()
    return save_png(fig, png)


def accuracy_vs_noises(run: str | Path, noises: Sequence[int], timestep: int, repeats: int = 20) -> list[dict]:
    """Unseen top-1 and B=1 latency of the folded scorer for each J on a trained seed folder
    (`export.tradeoff.measure_tradeoff` at keep = K, i.e. no pruning)."""
    from export.tradeoff import load_seed_problem, measure_tradeoff

    prob = load_seed_problem(run)
    K = prob.text.num_classes
    return measure_tradeoff(prob, configs=[(J, timestep, K) for J in noises], batch_sizes=(1,), repeats=repeats)


def plot_accuracy(rows: Sequence[dict], png: str | Path, title: str) -> Path:
    """Unseen top-1 (%) against J, each point labelled with its B=1 latency; chance as a dotted line."""
    from tdsm_edge.figures import new_figure, save_png

    if not rows:
        raise InputError("plot_accuracy needs at least one row")
    rows = sorted(rows, key=lambda r: r["J"])
    fig = new_figure(5.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    xs, ys = [r["J"] for r in rows], [100 * r["top1"] for r in rows]
    ax.plot(xs, ys, marker="o", color="C0", label="TDSM, folded scorer (fp32)")
    for x, y, r in zip(xs, ys, rows):
        ax.annotate(f"{r['latency_ms_b1']:.2g} ms", (x, y), textcoords="offset points", xytext=(4, -11), fontsize=7)
    ax.axhline(100 / rows[0]["K"], color="grey", linestyle=":", label=f"chance (1/{rows[0]['K']})")
    ax.set_xticks(xs)
    ax.set_xlim(min(xs) - 0.5, max(xs) + 1.0)  # room for the last latency label
    ax.set_xlabel("J noises (one denoiser row per class per noise)")
    ax.set_ylabel("unseen top-1 (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, png)


def format_accuracy(rows: Sequence[dict], run: str | Path) -> str:
    r0 = rows[0]
    lines = [
        "",
        "## Accuracy vs J",
        "",
        f"Run `{run}`: K={r0['K']} unseen classes, n={r0['n']} test samples, t={r0['t']}; folded scorer fp32, "
        f"{r0['device']} × {r0['threads']} thread(s); latency: median of one B=1 call.",
        "",
        "| J | top-1 % | ms B=1 |",
        "|---:|---:|---:|",
    ]
    lines += [
        f"| {r['J']} | {100 * r['top1']:.1f} | {r['latency_ms_b1']:.3g} |" for r in sorted(rows, key=lambda r: r["J"])
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tdsm_edge.cli import HelpFormatter, add_log_level, run_main, setup_logging

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("results", help="pytest-benchmark JSON (python -m pytest benchmarks/ --benchmark-json FILE)")
    p.add_argument("--out", default="benchmarks/results", help="folder for benchmarks.md and the PNG plots")
    p.add_argument(
        "--run",
        default=DEFAULT_RUN,
        help="trained synthact seed folder for the accuracy-vs-J plot (skipped with a note when it does not exist)",
    )
    p.add_argument("--noises", type=int, nargs="+", default=list(DEFAULT_NOISES), help="J values of the accuracy plot")
    p.add_argument("--timestep", type=int, default=25, help="t of the accuracy plot")
    add_log_level(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    out = Path(args.out)

    def body() -> None:
        results, context = load_results(args.results)
        text = format_markdown(results, context)
        plot_latency(results, out / "latency_vs_K.png")
        if Path(args.run).is_dir():
            rows = accuracy_vs_noises(args.run, args.noises, args.timestep)
            plot_accuracy(rows, out / "accuracy_vs_J.png", f"synthact {args.run}: top-1 vs J (t={args.timestep})")
            text += format_accuracy(rows, args.run)
        else:
            log.warning(
                "accuracy vs J skipped: no trained run at %s (train one with make demo, or pass --run)", args.run
            )
            text += f"\nAccuracy vs J: skipped (no trained run at `{args.run}`).\n"
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmarks.md").write_text(text)
        print(text)
        log.info("wrote %s", out / "benchmarks.md")

    return run_main(body, log, interrupted="interrupted; benchmarks.md was not written")


if __name__ == "__main__":
    from tdsm_edge.cli import exit_main

    exit_main(main())
