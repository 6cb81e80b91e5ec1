"""python -m benchmarks.decoupled — the decoupled student against its TDSM teacher, folded, on ONNX Runtime (CPU).

For each preset: the benchmark problem's random-weight teacher (benchmarks/problem.py) and a student
with the SAME weights and `attention: decoupled`; both folded and exported as fp32 ONNX scorer graphs.
Per case (B samples, K classes, J = 3): each graph's errors are asserted equal to its own model's
reference — the paper's literal loop (`score_reference`) where that is affordable (every case of tiny
and small, B = 1 of paper), else the torch FoldedScorer, which tests/models/test_folded.py pins to
the loop — then both are timed in the same run, interleaved, one ORT thread. Also per preset: matmul
GFLOP per call counted by torch's FlopCounterMode on the scorer the graph was exported from, the
graph's weight bytes (ONNX initializers) and each variant's class-table bytes per class. Where the
literal loop is the reference, its own time (torch, one thread) is reported beside the graphs.

Jetson AGX Orin estimate (an ESTIMATE, not a measurement): a roofline from the counted matmul FLOPs
and the bytes one call must stream, with the data-sheet figures of shared/reference/ANCHORS.md —
204.8 GB/s memory, FP16 tensor throughput taken at a realistic 20 TFLOPS (of ≈ 42 dense peak); fp16
bytes = half the fp32 graph's weights plus K classes' tables. Estimate = max(compute, memory).

    python -m benchmarks.decoupled --presets tiny small paper --out docs/benchmarks_cpu/decoupled.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.problem import NOISE_SEED, TIMESTEP, build_problem, check_against_reference
from tdsm_edge.cli import exit_main

J = 3
CASES = ((1, 5), (64, 5), (1, 24), (64, 24), (1, 60), (64, 60))  # (B, K)
ORIN_BYTES_PER_S = 204.8e9  # Jetson AGX Orin 64 GB memory bandwidth (data sheet; ANCHORS.md)
ORIN_FLOPS = 20e12  # FP16 tensor FLOP/s at a realistic share of the ≈ 42 TFLOPS dense peak (ANCHORS.md)


def orin_estimate_ms(gflop: float, weight_bytes_fp32: int, table_bytes_per_class_fp32: int, K: int) -> dict:
    """Roofline estimate of one fp16 call on a Jetson AGX Orin: compute ms, memory ms and their max."""
    compute = gflop * 1e9 / ORIN_FLOPS * 1e3
    memory = (weight_bytes_fp32 + K * table_bytes_per_class_fp32) / 2 / ORIN_BYTES_PER_S * 1e3
    return {"compute_ms": compute, "memory_ms": memory, "ms": max(compute, memory)}


def _variants(p):
    """(teacher, student): the problem's denoiser and a decoupled copy of its weights."""
    from tdsm_edge.config import replace
    from tdsm_edge.models.denoiser import TDSMDenoiser

    student = TDSMDenoiser(replace(p.cfg, attention="decoupled"))
    student.load_state_dict(p.model.state_dict(), strict=True)
    return {"teacher": p.model, "student": student.eval()}


def _flops(scorer, z, tables) -> float:
    """Matmul GFLOP of one scorer call, counted on the module (FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        scorer(z, **tables)
    return fc.get_total_flops() / 1e9


def _weight_bytes(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path))
    return sum(
        int(np.prod(t.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        for t in proto.graph.initializer
    )


def measure(
    preset: str,
    repeats: int,
    tmp: Path,
    literal_max_rows: int,
    cases=CASES,
    rounds: int = 2,
    warmup: int = 1,
    check_samples: int | None = None,
) -> dict:
    """One preset's graphs and cases. rounds: interleaved teacher/student medians (the lower kept);
    check_samples: check the first N samples' rows against the reference (rows are independent per
    sample; None = all) — for cases whose reference would take minutes."""
    import onnxruntime as ort
    import torch

    from export.onnx_export import export_scorer
    from tdsm_edge.models.class_tables import class_tables
    from tdsm_edge.models.folded import FoldedScorer
    from tdsm_edge.scoring import noise_bank, score_reference
    from tdsm_edge.timing import median_ms

    p = build_problem(preset)
    noises = noise_bank(J, p.cfg.z_dim, NOISE_SEED)
    text = p.text
    fc, fl, mask = (torch.from_numpy(a) for a in (text.global_, text.local, text.mask))
    out: dict = {"preset": preset, "J": J, "graphs": {}, "cases": []}
    run = {}
    for name, model in _variants(p).items():
        scorer = FoldedScorer(model, p.schedule, noises, TIMESTEP, p.stats).eval()
        path = tmp / f"{preset}_{name}.onnx"
        export_scorer(scorer, path, "fp32")
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.enable_cpu_mem_arena = False  # the paper teacher's B = 64 intermediates are GBs: free them per call
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        tables = {k: v for k, v in class_tables(model, fc, fl, mask, TIMESTEP).items()}
        table_bytes = sum(v[0].numel() * v.element_size() for v in tables.values())
        out["graphs"][name] = {"weight_bytes": _weight_bytes(path), "table_bytes_per_class": int(table_bytes)}
        run[name] = (model, scorer, sess, tables)
    for B, K in cases:
        z = p.features(B)
        case: dict = {"B": B, "K": K}
        calls = {}
        n = B if check_samples is None else min(B, check_samples)
        for name, (model, scorer, sess, tables) in run.items():
            feeds = {"z": z, **{k: v[:K].numpy() for k, v in tables.items()}}
            errors = sess.run(["errors"], feeds)[0]  # (B, K)
            zt = torch.from_numpy(z)
            with torch.no_grad():
                if n * K * J <= literal_max_rows:
                    zs = torch.from_numpy(p.stats.apply(z[:n]))
                    text_k = (fc[:K], fl[:K], mask[:K])
                    ref, against = score_reference(model, p.schedule, zs, text_k, noises, TIMESTEP), "loop"
                    if name == "teacher" and n == B:  # the paper's loop, timed once per case
                        loop = lambda m=model, zs=zs, t=text_k: score_reference(m, p.schedule, zs, t, noises, TIMESTEP)  # noqa: E731
                        case["loop_ms"] = median_ms(loop, min(repeats, 3), warmup=0, max_s=30)
                else:
                    ref, against = scorer(zt[:n], **{k: v[:K] for k, v in tables.items()}), "folded-torch"
            case[f"{name}_check"] = {
                "against": against,
                "samples": n,
                **check_against_reference(errors[:n], ref.numpy()),
            }
            # counted on one sample, times B: every op of the folded graph is per sample (exact, and the
            # paper teacher's B = 64 call would hold tens of GB of activations in torch)
            case[f"{name}_gflop"] = B * _flops(scorer, zt[:1], {k: v[:K] for k, v in tables.items()})
            calls[name] = lambda s=sess, f=feeds: s.run(["errors"], f)
        for name in ("teacher", "student") * rounds:  # interleaved: drift hits both alike
            case.setdefault(f"{name}_ms", []).append(median_ms(calls[name], repeats, warmup=warmup, max_s=30))
        for name in ("teacher", "student"):
            case[f"{name}_ms"] = min(case[f"{name}_ms"])
            g = out["graphs"][name]
            case[f"{name}_orin"] = orin_estimate_ms(
                case[f"{name}_gflop"], g["weight_bytes"], g["table_bytes_per_class"], K
            )
        case["speedup"] = case["teacher_ms"] / case["student_ms"]
        case["flop_ratio"] = case["teacher_gflop"] / case["student_gflop"]
        out["cases"].append(case)
        loop = f"  loop {case['loop_ms']:.1f} ms" if "loop_ms" in case else ""
        print(
            f"{preset:5s} B={B:3d} K={K:3d}: teacher {case['teacher_ms']:9.2f} ms  student {case['student_ms']:8.2f} ms"
            f"  ×{case['speedup']:5.1f}{loop}  (GFLOP {case['teacher_gflop']:.3f} → {case['student_gflop']:.3f}, "
            f"×{case['flop_ratio']:.1f}; checked against {case['teacher_check']['against']})",
            flush=True,
        )
    return out


def markdown(results: list[dict]) -> str:
    lines = [
        "| preset | B | K | paper's loop ms | teacher ms | student ms | speed-up | GFLOP teacher → student "
        "| weights MB teacher → student | tables KB / class teacher → student "
        "| Jetson AGX Orin fp16 ESTIMATE ms teacher → student |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        g = r["graphs"]
        for c in r["cases"]:
            loop = f"{c['loop_ms']:.2f}" if "loop_ms" in c else "—"
            lines.append(
                f"| {r['preset']} | {c['B']} | {c['K']} | {loop} | {c['teacher_ms']:.2f} | {c['student_ms']:.2f} | "
                f"×{c['speedup']:.1f} | {c['teacher_gflop']:.3f} → {c['student_gflop']:.3f} | "
                f"{g['teacher']['weight_bytes'] / 1e6:.1f} → {g['student']['weight_bytes'] / 1e6:.1f} | "
                f"{g['teacher']['table_bytes_per_class'] / 1e3:.1f} → {g['student']['table_bytes_per_class'] / 1e3:.1f} | "
                f"{c['teacher_orin']['ms']:.2f} → {c['student_orin']['ms']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.decoupled",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=["tiny", "small", "paper"])
    p.add_argument("--repeats", type=int, default=20, help="timed calls per median (default: 20)")
    p.add_argument(
        "--literal-max-rows",
        type=int,
        default=400,
        help="check against the literal loop when B·K·J is at most this, else the torch folded scorer (default: 400)",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=[f"{B},{K}" for B, K in CASES],
        metavar="B,K",
        help="(batch, classes) cases; the paper preset's teacher needs ~6 GFLOP per row (B·K·J rows)",
    )
    p.add_argument(
        "--rounds", type=int, default=2, help="interleaved teacher/student medians per case, lower kept (default: 2)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before each median (default: 1)")
    p.add_argument(
        "--check-samples",
        type=int,
        default=None,
        metavar="N",
        help="check only the first N samples' rows against the reference (default: all)",
    )
    p.add_argument("--out", default=None, help="also write the results as JSON here (and a .md beside it)")
    args = p.parse_args(argv)
    try:
        cases = [tuple(int(v) for v in c.split(",")) for c in args.cases]
        assert all(len(c) == 2 and min(c) >= 1 for c in cases)
    except (ValueError, AssertionError):
        p.error(f"--cases takes B,K pairs of positive ints, e.g. 1,5 64,24; got {args.cases}")
    if (
        args.rounds < 1
        or args.repeats < 1
        or args.warmup < 0
        or (args.check_samples is not None and args.check_samples < 1)
    ):
        p.error("--rounds, --repeats and --check-samples must be at least 1, --warmup at least 0")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            measure(
                pr, args.repeats, Path(tmp), args.literal_max_rows, cases, args.rounds, args.warmup, args.check_samples
            )
            for pr in args.presets
        ]
    table = markdown(results)
    print("\n" + table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    exit_main(main())
