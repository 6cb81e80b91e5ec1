"""The trtexec and polygraphy command lines that check a bundle's graphs on a machine with TensorRT.

    python -m export.trt_commands engines/demo                    # the scorer and encoder, every check
    python -m export.trt_commands engines/demo --graph scorer > check_scorer.sh

For a Jetson (JetPack 6: TensorRT 10.3, `trtexec` in /usr/src/tensorrt/bin) or any TensorRT 10 machine,
independent of this package: NVIDIA's own tools on the bundle's own ONNX graphs. Per graph it prints
    1. trtexec --onnx ...      build a plan from the graph with the bundle's optimization profile
                               (--stronglyTyped for a fp16 bundle and TF32 off, as build_plan builds it;
                               --fp16 where the bundle's plan fell back to weak typing) and time it at
                               the profile's opt shapes, with CUDA graphs;
    2. trtexec --loadEngine …  time each plan the bundle already holds (it loads only on the TensorRT
                               version and GPU named in its record);
    3. polygraphy run …        the graph in TensorRT and in ONNX Runtime on the same random inputs,
                               compared (fp32: rtol 1e-4, atol 1e-5; fp16: rtol 1e-2, atol 1e-3).
Every shape comes from the manifest's IO spec (`IOSpec.profile`), the one derivation the builder uses,
so the commands fit the bundle they were printed for. The package's own end-to-end check on such a
machine is the build itself: `python -m export.build_engine --backend tensorrt` verifies every plan
against ONNX Runtime on held-out features (export/verify.py) or fails.

Nothing here runs TensorRT or checks the tools' versions: it reads the manifest only (no tensorrt, no
torch). The flags were checked against TensorRT 10's trtexec and polygraphy documentation, not run here.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from tdsm_edge.cli import HelpFormatter, add_log_level, exit_main, run_main, start_offline
from tdsm_edge.errors import ConfigError
from tdsm_edge.runtime.manifest import Manifest, load_manifest

from .tensorrt_build import WEAK_FP16
from .verify import FP32_MAX_REL

log = logging.getLogger("export.trt_commands")

PLAN_GRAPHS = ("scorer", "encoder")  # the graphs a TensorRT build makes plans of (the text side runs on ORT)
FP16_RTOL, FP16_ATOL = 1e-2, 1e-3  # TensorRT fp16 kernels vs ONNX Runtime's on the same fp16 graph
FP32_ATOL = 1e-5


def _dims(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def _trtexec_shapes(profile: dict, which: int) -> str:
    """`name:AxB,name2:CxDxE` of the profile's min (0), opt (1) or max (2) shapes."""
    return ",".join(f"{name}:{_dims(shapes[which])}" for name, shapes in profile.items())


def _polygraphy_shapes(profile: dict, which: int) -> list[str]:
    """`name:[A,B]` words of the profile's min (0), opt (1) or max (2) shapes."""
    return [f"{name}:[{','.join(str(int(d)) for d in shapes[which])}]" for name, shapes in profile.items()]


def commands(m: Manifest, graph: str) -> list[tuple[str, list[str]]]:
    """(what it checks, argv) of every check of `graph` in bundle `m`."""
    if graph not in m.graphs or graph not in m.io.graphs:
        raise ConfigError(
            f"the bundle {str(m.root)!r} has no {graph} graph; it has {sorted(m.graphs)}. Choose one of "
            f"{[g for g in PLAN_GRAPHS if g in m.graphs]} with --graph"
        )
    profile = m.io.profile(graph)
    onnx = str(m.path(graph).resolve())  # absolute: the script may be run from anywhere
    fp16 = m.precision == "fp16"
    weak = [p for p in m.plans if p.get("graph") == graph and p.get("precision_mode") == WEAK_FP16]
    out = []
    build = ["trtexec", f"--onnx={onnx}", "--noTF32"]  # build_plan clears TF32 at every precision
    if fp16:
        build += ["--fp16"] if weak else ["--stronglyTyped"]
    build += [f"--{k}Shapes={_trtexec_shapes(profile, i)}" for i, k in enumerate(("min", "opt", "max"))]
    build += [f"--shapes={_trtexec_shapes(profile, 1)}", "--useCudaGraph", f"--saveEngine={graph}_trtexec.plan"]
    how = (
        "weakly typed fp16, as the bundle's plan was (its strongly typed parse failed there); trtexec cannot pin "
        "the float32 islands as build_plan did, so its numbers may differ"
        if weak and fp16
        else "as build_plan builds it"
    )
    out.append((f"{graph}: build a plan from the ONNX graph with the bundle's profile ({how}), and time it", build))
    for plan in (p for p in m.plans if p.get("graph") == graph):
        where = f"TensorRT {plan.get('tensorrt_version')} on {plan.get('gpu_name')} (compute {plan.get('compute_capability')})"
        run = ["trtexec", f"--loadEngine={m.path(plan['file']).resolve()}", f"--shapes={_trtexec_shapes(profile, 1)}"]
        out.append(
            (f"{graph}: time the bundle's plan {plan['file']} (loads only on {where})", [*run, "--useCudaGraph"])
        )
    compare = ["polygraphy", "run", onnx, "--trt", "--onnxrt"]
    compare += (["--fp16"] if weak else ["--strongly-typed"]) if fp16 else []
    for i, flag in enumerate(("--trt-min-shapes", "--trt-opt-shapes", "--trt-max-shapes")):
        compare += [flag, *_polygraphy_shapes(profile, i)]
    compare += ["--input-shapes", *_polygraphy_shapes(profile, 1)]
    rtol, atol = (FP16_RTOL, FP16_ATOL) if fp16 else (FP32_MAX_REL, FP32_ATOL)
    compare += ["--rtol", f"{rtol:g}", "--atol", f"{atol:g}"]
    out.append((f"{graph}: TensorRT against ONNX Runtime on the same random inputs ({m.precision})", compare))
    return out


def script(m: Manifest, graphs: list[str]) -> str:
    """A shell script: one commented command per check."""
    lines = [
        "#!/usr/bin/env bash",
        f"# TensorRT checks of the bundle {str(m.root.resolve())!r} ({m.precision}), printed by python -m export.trt_commands.",
        "# Run on the machine with TensorRT 10 (a Jetson: /usr/src/tensorrt/bin/trtexec; pip install polygraphy).",
        "set -euo pipefail",
    ]
    for graph in graphs:
        for what, argv in commands(m, graph):
            lines += ["", f"# {what}", shlex.join(argv)]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.trt_commands", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("bundle", help="an engine bundle folder (engines/<name>)")
    p.add_argument(
        "--graph",
        action="append",
        choices=PLAN_GRAPHS,
        default=None,
        help="the graph to check; repeat for several (default: every one of scorer / encoder in the bundle)",
    )
    add_log_level(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start_offline(args.log_level)

    def run() -> None:
        m = load_manifest(args.bundle)
        graphs = list(dict.fromkeys(args.graph)) if args.graph else [g for g in PLAN_GRAPHS if g in m.graphs]
        sys.stdout.write(script(m, graphs))

    return run_main(run, log)


if __name__ == "__main__":
    exit_main(main())
