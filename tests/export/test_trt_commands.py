"""The trtexec / polygraphy commands printed for a bundle: every shape is the IO spec's profile, the
precision flags follow the bundle, and each plan the bundle holds gets its timing command. (The tools
themselves are not here: these commands are for a machine with TensorRT.)"""

from __future__ import annotations

import logging
import shlex
import subprocess

import pytest

pytest.importorskip("onnxscript")

from export import trt_commands  # noqa: E402


def trtexec_shapes(word: str) -> dict[str, tuple[int, ...]]:
    """`--minShapes=a:1x2,b:3` → {"a": (1, 2), "b": (3,)} (trtexec's syntax, read back)."""
    value = word.split("=", 1)[1]
    return {name: tuple(int(d) for d in dims.split("x")) for name, dims in (s.split(":") for s in value.split(","))}


def polygraphy_shapes(argv: list[str], flag: str) -> dict[str, tuple[int, ...]]:
    """The `name:[a,b]` words after `flag` up to the next option (polygraphy's syntax, read back)."""
    words = argv[argv.index(flag) + 1 :]
    out = {}
    for w in words:
        if w.startswith("--"):
            break
        name, dims = w.split(":")
        out[name] = tuple(int(d) for d in dims.strip("[]").split(","))
    return out


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_commands_carry_the_bundles_profile_and_precision(bundle, bundle16, precision):
    m, _ = bundle if precision == "fp32" else bundle16
    profile = m.io.profile("scorer")
    (_, build), (_, compare) = trt_commands.commands(m, "scorer")  # no plans in this bundle: no timing line
    assert build[0] == "trtexec" and build[1] == f"--onnx={m.path('scorer').resolve()}"
    for i, key in enumerate(("min", "opt", "max")):
        (word,) = [w for w in build if w.startswith(f"--{key}Shapes=")]
        assert trtexec_shapes(word) == {n: s[i] for n, s in profile.items()}
        assert polygraphy_shapes(compare, f"--trt-{key}-shapes") == {n: s[i] for n, s in profile.items()}
    (shapes,) = [w for w in build if w.startswith("--shapes=")]
    assert trtexec_shapes(shapes) == {n: s[1] for n, s in profile.items()}
    assert polygraphy_shapes(compare, "--input-shapes") == {n: s[1] for n, s in profile.items()}
    assert set(profile) == set(m.io.graphs["scorer"].input_names) and len(profile) > 2  # z and the tables
    strongly = precision == "fp16"
    assert ("--stronglyTyped" in build, "--strongly-typed" in compare, "--fp16" in build) == (strongly, strongly, False)
    assert "--noTF32" in build  # build_plan clears TF32 at every precision
    assert compare[:5] == ["polygraphy", "run", str(m.path("scorer").resolve()), "--trt", "--onnxrt"]
    rtol = float(compare[compare.index("--rtol") + 1])
    assert rtol == (trt_commands.FP16_RTOL if strongly else trt_commands.FP32_MAX_REL)


def test_every_plan_of_the_graph_gets_a_timing_command(bundle):
    m, _ = bundle
    m.data["plans"] = [  # records as build_plan writes them (this Manifest object only)
        {
            "file": "scorer_fp32.trt10.3.0.plan",
            "graph": "scorer",
            "tensorrt_version": "10.3.0",
            "gpu_name": "Orin",
            "compute_capability": "8.7",
        },
        {
            "file": "encoder_fp32.trt10.3.0.plan",
            "graph": "encoder",
            "tensorrt_version": "10.3.0",
            "gpu_name": "Orin",
            "compute_capability": "8.7",
        },
    ]
    cmds = trt_commands.commands(m, "scorer")
    timing = [argv for what, argv in cmds if argv[1].startswith("--loadEngine=")]
    assert len(timing) == 1 and timing[0][1] == f"--loadEngine={m.path('scorer_fp32.trt10.3.0.plan').resolve()}"
    assert "TensorRT 10.3.0 on Orin (compute 8.7)" in [what for what, argv in cmds if argv is timing[0]][0]


def test_the_script_and_the_command_line(bundle, capsys, tmp_path, caplog):
    m, _ = bundle
    assert trt_commands.main([str(m.root)]) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "set -euo pipefail"
    argvs = [shlex.split(ln) for ln in lines[1:]]
    assert [a[0] for a in argvs] == ["trtexec", "polygraphy"]  # the tiny bundle has only a scorer graph
    with caplog.at_level(logging.ERROR):
        assert trt_commands.main([str(tmp_path / "nowhere")]) == 2
    assert "not an engine bundle" in caplog.text
    with pytest.raises(SystemExit):
        trt_commands.main([str(m.root), "--graph", "tables"])
    with caplog.at_level(logging.ERROR):
        assert trt_commands.main([str(m.root), "--graph", "encoder"]) == 2
    assert "has no encoder graph" in caplog.text


def test_the_help_states_the_tolerances_the_commands_use():
    import re

    stated = {
        p: tuple(map(float, m))
        for p, *m in re.findall(r"(fp\d\d): rtol ([\d.e-]+), atol ([\d.e-]+)", trt_commands.__doc__)
    }
    assert stated == {
        "fp32": (trt_commands.FP32_MAX_REL, trt_commands.FP32_ATOL),
        "fp16": (trt_commands.FP16_RTOL, trt_commands.FP16_ATOL),
    }


def test_a_bundle_whose_plan_fell_back_to_weak_typing_gets_weakly_typed_commands(bundle16):
    from export.tensorrt_build import WEAK_FP16

    m, _ = bundle16
    plans = m.data["plans"]
    try:
        m.data["plans"] = [{"file": "s.plan", "graph": "scorer", "precision_mode": WEAK_FP16}]
        cmds = trt_commands.commands(m, "scorer")
    finally:
        m.data["plans"] = plans
    build, compare = cmds[0][1], cmds[-1][1]
    assert "--fp16" in build and "--stronglyTyped" not in build and "weakly typed" in cmds[0][0]
    assert "--fp16" in compare and "--strongly-typed" not in compare


def test_a_bundle_path_cannot_break_out_of_the_script_comment(bundle, tmp_path, capsys):
    import shutil

    m, _ = bundle
    odd = tmp_path / "x\ntouch PWNED #"
    shutil.copytree(m.root, odd)
    assert trt_commands.main([str(odd), "--graph", "scorer", "--graph", "scorer"]) == 0
    text = capsys.readouterr().out
    assert sum(line.startswith("trtexec") for line in text.splitlines()) == 1  # a repeated --graph counts once
    tools = tmp_path / "tools"  # stand-ins for trtexec / polygraphy: run the script as a user would
    tools.mkdir()
    for tool in ("trtexec", "polygraphy"):
        (tools / tool).write_text("#!/bin/sh\nexit 0\n")
        (tools / tool).chmod(0o755)
    (tmp_path / "check.sh").write_text(text)
    run = tmp_path / "run"
    run.mkdir()
    env = {"PATH": f"{tools}:/usr/bin:/bin"}
    done = subprocess.run(["bash", str(tmp_path / "check.sh")], cwd=run, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list(run.iterdir()) == []  # nothing in the path ran as a command
