"""The short report `python -m export.build_engine` prints at the end of a build: files, verification,
open-set calibration, ONNX Runtime latency and the reduced-evaluation trade-off."""

from __future__ import annotations

import numpy as np

from tdsm_edge.runtime.iospec import BATCH
from tdsm_edge.timing import median_ms

VARIANTS = {"joint": "TDSM (joint attention)", "decoupled": "decoupled student (text K/V folded per class)"}


def format_report(result: dict) -> str:
    """The short table printed at the end of a build."""
    from tdsm_edge.runtime.ort_backend import OrtBackend

    m = result["manifest"]
    out, v = result["bundle"], m.data.get("verify") or {}
    lines = [
        f"Engine bundle {out} ({result['backend']}, {m.precision})",
        "",
        "| item | value |",
        "|---|---|",
        f"| classes ({len(m.class_names)}) | {', '.join(m.class_names)} |",
        f"| scoring | t={m.data['scoring']['timestep']}, J={m.data['scoring']['num_noises']}, "
        f"batch {m.io.axes[BATCH].min}..{m.io.axes[BATCH].max} |",
        f"| denoiser | {VARIANTS[m.data['model']['denoiser'].get('attention', 'joint')]}"
        + (f"; {result['choice']}" if result.get("choice") else "")
        + " |",
    ]
    for rel in m.data["files"]:
        lines.append(f"| {rel} | {(out / rel).stat().st_size / 1e6:.2f} MB |")
    if v:
        s = v["scorer"]
        lines.append(
            f"| verify scorer ({v['samples']} held-out, {v['provider']}) | max abs {s['max_abs_err']:.2e}, "
            f"max rel {s['max_rel_err']:.2e}, top-1 agreement {100 * s['top1_agreement']:.1f}% |"
        )
        if "top1_bundle" in s:
            lines.append(
                f"| top-1 accuracy bundle / torch | {100 * s['top1_bundle']:.1f}% / "
                f"{100 * s['top1_reference']:.1f}% ({s['labelled']} labelled) |"
            )
        if "encoder" in v:
            e = v["encoder"]
            lines.append(
                f"| verify encoder ({e['windows']} windows) | features max rel "
                f"{e['features']['max_rel_err']:.2e}; "
                f"encoder→scorer top-1 agreement {100 * e['end_to_end']['top1_agreement']:.1f}% |"
            )
        if "text" in v:
            t = v["text"]
            lines.append(
                f"| verify text side ({t['classes']} classes re-encoded, {t['provider']}) | tables max rel "
                f"{t['max_rel_err']:.2e} vs tables.npz (limit {t['threshold']:g}) |"
            )
        for plan, s in v.get("plans", {}).items():
            lines.append(
                f"| verify {plan} | max rel {s['max_rel_err']:.2e}, top-1 agreement {100 * s['top1_agreement']:.1f}% |"
            )
    else:
        lines.append("| verify | skipped (--no-verify) |")
    if "runtime" in m.data["text"]:
        lines.append(
            "| text side | rec.add_classes(names, descriptions) works on this bundle (MiniLM text graph + "
            "tables graph, ONNX Runtime) |"
        )
    else:
        lines.append("| text side | none: classes are fixed at build time (--text-encoder needs a MiniLM run) |")
    o = m.data.get("open_set")
    if o:
        t = o.get("test", {})
        lines.append(
            f"| open set (\"none of these\") | margin threshold {o['threshold']:.4g} from "
            f"{o['calibration_samples']} {o['calibrated_on']} samples; on test: in-set kept "
            f"{100 * t.get('in_set_accepted', float('nan')):.1f}%, accuracy of kept "
            f"{100 * t.get('accuracy_accepted', float('nan')):.1f}% (all {100 * t.get('accuracy', float('nan')):.1f}%), "
            f"out-of-set rejected {100 * t.get('out_of_set_rejected', float('nan')):.1f}% |"
        )
    scorer = OrtBackend(out)
    z = np.random.default_rng(0).normal(size=(scorer.batch.max, scorer.z_dim)).astype(np.float32)
    for B in sorted({1, scorer.batch.max}):
        ms = median_ms(lambda b=B: scorer.errors(z[:b]), repeats=20)
        lines.append(f"| ONNX Runtime latency, batch {B} ({scorer.providers[0]}) | {ms:.2f} ms |")
    if result.get("triton"):
        lines.append(f"| Triton model | {result['triton']} |")
    signed = (out / "manifest.sig").is_file()
    lines.append(f"| bundle digest | {m.digest}{' (signed: manifest.sig)' if signed else ''} |")
    if result.get("tradeoff"):
        from .tradeoff import format_table

        lines += [
            "",
            f"Reduced evaluations (torch fp32 folded scorer, 1 thread; plot: {result['tradeoff']['png']}):",
            "",
            format_table(result["tradeoff"]["results"]),
        ]
    lines += [
        "",
        f"Load it: ZeroShotRecognizer.load({str(out)!r}, digest={m.digest!r}) (from tdsm_edge import "
        "ZeroShotRecognizer; digest= pins this exact build, leave it out to accept any intact bundle"
        + (", public_key=... checks the signature" if signed else "")
        + f"); rebuild: {m.rebuild_command}",
    ]
    return "\n".join(lines)
