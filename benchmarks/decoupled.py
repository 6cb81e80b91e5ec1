"""python -m benchmarks.decoupled — the decoupled student against its TDSM teacher, folded, on ONNX Runtime (CPU).

For each preset: the benchmark problem's random-weight teacher (benchmarks/problem.py) and a student
with the SAME weights and `attention: decoupled`; both folded and exported as fp32 ONNX scorer graphs.
Per case (B samples, K classes, J = 3): each graph's errors are asserted equal to its own model's
reference — the paper's literal loop (`score_reference`) where that is affordable (every case of tiny
and small, B = 1 of paper), else the torch FoldedScorer, which tests/models/test_folded.py pins to
the loop — then both are timed in the same run, interleaved, one ORT thread. Also per preset: matmul
GFLOP per call counted by torch's FlopCounterMode on the scorer the graph was exported from, the
graph's weight bytes (ONNX initializers) and the student's class-table bytes per class.

    python -m benchmarks.decoupled --presets tiny small paper --out docs/benchmarks_cpu/decoupled.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.problem import NOISE_SEED, TIMESTEP, build_problem, check_against_reference

J = 3
CASES = ((1, 5), (64, 5), (1, 24), (64, 24), (64, 60))  # (B, K)


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


def measure(preset: str, repeats: int, tmp: Path, literal_max_rows: int, cases=CASES) -> dict:
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
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        tables = {k: v for k, v in class_tables(model, fc, fl, mask, TIMESTEP).items()}
        table_bytes = sum(v[0].numel() * v.element_size() for v in tables.values())
        out["graphs"][name] = {"weight_bytes": _weight_bytes(path), "table_bytes_per_class": int(table_bytes)}
        run[name] = (model, scorer, sess, tables)
    for B, K in cases:
        z = p.features(B)
        case: dict = {"B": B, "K": K}
        calls = {}
        for name, (model, scorer, sess, tables) in run.items():
            feeds = {"z": z, **{k: v[:K].numpy() for k, v in tables.items()}}
            errors = sess.run(["errors"], feeds)[0]  # (B, K)
            zt = torch.from_numpy(z)
            with torch.no_grad():
                if B * K * J <= literal_max_rows:
                    zs = torch.from_numpy(p.stats.apply(z))
                    ref, against = (
                        score_reference(model, p.schedule, zs, (fc[:K], fl[:K], mask[:K]), noises, TIMESTEP),
                        "loop",
                    )
                else:
                    ref, against = scorer(zt, **{k: v[:K] for k, v in tables.items()}), "folded-torch"
            case[f"{name}_check"] = {"against": against, **check_against_reference(errors, ref.numpy())}
            case[f"{name}_gflop"] = _flops(scorer, zt, {k: v[:K] for k, v in tables.items()})
            calls[name] = lambda s=sess, f=feeds: s.run(["errors"], f)
        for name in ("teacher", "student", "teacher", "student"):  # interleaved: drift hits both alike
            case.setdefault(f"{name}_ms", []).append(median_ms(calls[name], repeats, warmup=1, max_s=30))
        for name in ("teacher", "student"):
            case[f"{name}_ms"] = min(case[f"{name}_ms"])
        case["speedup"] = case["teacher_ms"] / case["student_ms"]
        case["flop_ratio"] = case["teacher_gflop"] / case["student_gflop"]
        out["cases"].append(case)
        print(
            f"{preset:5s} B={B:3d} K={K:3d}: teacher {case['teacher_ms']:9.2f} ms  student {case['student_ms']:8.2f} ms"
            f"  ×{case['speedup']:5.1f}  (GFLOP {case['teacher_gflop']:.3f} → {case['student_gflop']:.3f}, "
            f"×{case['flop_ratio']:.1f}; checked against {case['teacher_check']['against']})",
            flush=True,
        )
    return out


def markdown(results: list[dict]) -> str:
    lines = [
        "| preset | B | K | teacher ms | student ms | speed-up | GFLOP teacher → student | weights MB teacher → student | student tables KB / class |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        g = r["graphs"]
        for c in r["cases"]:
            lines.append(
                f"| {r['preset']} | {c['B']} | {c['K']} | {c['teacher_ms']:.2f} | {c['student_ms']:.2f} | "
                f"×{c['speedup']:.1f} | {c['teacher_gflop']:.3f} → {c['student_gflop']:.3f} | "
                f"{g['teacher']['weight_bytes'] / 1e6:.1f} → {g['student']['weight_bytes'] / 1e6:.1f} | "
                f"{g['student']['table_bytes_per_class'] / 1e3:.1f} |"
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
    p.add_argument("--out", default=None, help="also write the results as JSON here (and a .md beside it)")
    args = p.parse_args(argv)
    try:
        cases = [tuple(int(v) for v in c.split(",")) for c in args.cases]
        assert all(len(c) == 2 and min(c) >= 1 for c in cases)
    except (ValueError, AssertionError):
        p.error(f"--cases takes B,K pairs of positive ints, e.g. 1,5 64,24; got {args.cases}")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(pr, args.repeats, Path(tmp), args.literal_max_rows, cases) for pr in args.presets]
    table = markdown(results)
    print("\n" + table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
