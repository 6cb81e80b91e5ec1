"""python -m tdsm_edge.distill on the tiny run: a decoupled student from a TDSM teacher, with resume."""

from __future__ import annotations

import json

import pytest
import torch

from tdsm_edge import distill
from tdsm_edge.models.folders import load_denoiser


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from helpers.tiny_run import train_tiny_run

    root = tmp_path_factory.mktemp("distill")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TDSM_CACHE_DIR", str(root / "cache"))
        run = train_tiny_run(root)
    return run / "ru5" / "seed1"


def test_the_student_starts_from_the_teacher_and_is_evaluated(teacher, tmp_path, capsys):
    out = tmp_path / "student" / "ru5" / "seed1"
    rc = distill.main(["--teacher", str(teacher), "--out", str(out), "--iterations", "8", "--no-progress"])
    assert rc == 0
    rec = json.loads((out / "distill.json").read_text())
    teacher_top1 = json.loads((teacher / "metrics.json").read_text())["tdsm"]["zsl"]["top1"]
    assert rec["teacher_top1"] == teacher_top1 and 0 <= rec["student_top1"] <= 1
    assert rec["train"]["iterations"] == 8
    assert "student (decoupled)" in capsys.readouterr().out
    student, _, stats, cfg = load_denoiser(out / "denoiser")
    t_model, _, t_stats, t_cfg = load_denoiser(teacher / "denoiser")
    assert cfg.denoiser.attention == "decoupled" and t_cfg.denoiser.attention == "joint"
    assert cfg.denoiser.hidden_size == t_cfg.denoiser.hidden_size  # same size, same parameter names
    assert set(student.state_dict()) == set(t_model.state_dict())
    # fine-tuned from the teacher: close to its weights, not equal (8 steps at the teacher's lr)
    diff = [(student.state_dict()[k] - v).abs().max().item() for k, v in t_model.state_dict().items()]
    assert 0 < max(diff) < 0.1
    history = json.loads((out / "denoiser" / "config.json").read_text())["history"]
    assert len(history["distill"]) == len(history["loss"]) > 0  # the distillation term was trained
    assert (out / "metrics.json").is_file()
    torch.testing.assert_close(torch.from_numpy(stats.mean), torch.from_numpy(t_stats.mean))  # same features


def test_resume_of_a_finished_student_only_evaluates_it(teacher, tmp_path, capsys):
    out = tmp_path / "s"
    assert distill.main(["--teacher", str(teacher), "--out", str(out), "--iterations", "4", "--no-progress"]) == 0
    weights = (out / "denoiser" / "model.safetensors").read_bytes()
    seconds = json.loads((out / "distill.json").read_text())["seconds"]
    assert distill.main(["--teacher", str(teacher), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert (out / "denoiser" / "model.safetensors").read_bytes() == weights  # not retrained
    assert json.loads((out / "distill.json").read_text())["seconds"] == seconds


def test_overwrite_never_deletes_the_teacher_or_its_run(teacher, tmp_path, caplog):
    run_root = teacher.parent.parent
    for out in (teacher, teacher.parent, run_root, teacher / "denoiser"):
        assert distill.main(["--teacher", str(teacher), "--out", str(out), "--overwrite"]) == 2
    assert "overlaps the teacher" in caplog.text
    other = tmp_path / "seed"  # a trained seed folder elsewhere is not a student folder
    (other / "encoder").mkdir(parents=True)
    (other / "denoiser").mkdir()
    assert distill.main(["--teacher", str(teacher), "--out", str(other), "--overwrite"]) == 2
    assert "deletes only a student folder" in caplog.text and (other / "encoder").is_dir()
    assert (teacher / "denoiser" / "model.safetensors").is_file() and (run_root / "config.yaml").is_file()
    assert distill.main(["--teacher", str(teacher), "--out", str(tmp_path / "z"), "--iterations", "0"]) == 2
    assert "iterations" in caplog.text


def test_an_existing_student_folder_needs_resume_or_overwrite(teacher, tmp_path, caplog):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert distill.main(["--teacher", str(teacher), "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in caplog.text and (out / "notes.txt").is_file()
    assert distill.main(["--teacher", str(teacher.parent), "--out", str(tmp_path / "x")]) == 2
    assert "holds no trained denoiser" in caplog.text
    assert distill.main(["--teacher", str(teacher), "--out", str(teacher)]) == 2


def test_from_scratch_trains_the_variant_without_the_teacher(teacher, tmp_path, caplog, monkeypatch):
    from tdsm_edge.training import denoiser_trainer

    calls, train = [], denoiser_trainer.train_denoiser
    monkeypatch.setattr(denoiser_trainer, "train_denoiser", lambda *a, **k: calls.append(k) or train(*a, **k))
    out = tmp_path / "scratch"
    argv = ["--teacher", str(teacher), "--out", str(out), "--iterations", "4", "--no-progress", "--from-scratch"]
    assert distill.main(argv) == 0
    assert calls[0]["teacher"] is None and calls[0]["init_state"] is None  # random weights, no teacher term
    rec = json.loads((out / "distill.json").read_text())
    assert rec["from_scratch"] is True and rec["w_distill"] == 0
    _, _, _, cfg = load_denoiser(out / "denoiser")
    assert cfg.denoiser.attention == "decoupled"
    history = json.loads((out / "denoiser" / "config.json").read_text())["history"]
    assert "distill" not in history  # no teacher term
    assert distill.main(argv[:4] + ["--from-scratch", "--w-distill", "1", "--overwrite"]) == 2
    assert "--from-scratch trains without the teacher" in caplog.text


def test_an_interrupt_says_what_can_be_resumed(tmp_path):
    out = tmp_path / "s"
    assert "run the same command again" in distill.interrupted_message(out)
    (out / "denoiser").mkdir(parents=True)
    assert "nothing to resume" in distill.interrupted_message(out) and "--overwrite" in distill.interrupted_message(out)
    step = out / "denoiser" / "checkpoints" / "step_00000010"
    step.mkdir(parents=True)
    (step / "model.safetensors").write_bytes(b"")
    assert "nothing to resume" in distill.interrupted_message(out)  # an incomplete checkpoint is not one
    (step / "train_state.json").write_text("{}")
    assert "latest checkpoint is kept" in distill.interrupted_message(out)
    (out / "denoiser" / "model.safetensors").write_bytes(b"")
    assert "latest checkpoint is kept" in distill.interrupted_message(out)  # saved = weights AND config
    (out / "denoiser" / "config.json").write_text("{}")
    assert "the student is saved" in distill.interrupted_message(out)


def test_resume_starts_a_missing_student_and_refuses_folders_that_are_not_its_students(teacher, tmp_path, caplog):
    out = tmp_path / "fresh"  # what make demo does on a fresh clone: --resume with nothing to resume
    assert (
        distill.main(["--teacher", str(teacher), "--out", str(out), "--iterations", "2", "--no-progress", "--resume"])
        == 0
    )
    rec = json.loads((out / "distill.json").read_text())
    assert rec["teacher_sha256"].startswith("sha256:") or len(rec["teacher_sha256"]) == 64
    # a finished student whose record lost its training time (an interrupted evaluation): resumed again
    (out / "distill.json").write_text(json.dumps(rec | {"seconds": None}))
    assert distill.main(["--teacher", str(teacher), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert json.loads((out / "distill.json").read_text())["seconds"] is None
    # --resume never adopts a trained seed folder, nor another teacher's student
    assert (
        distill.main(["--teacher", str(teacher), "--out", str(teacher.parent.parent / "ru5" / "seed1"), "--resume"])
        == 2
    )
    other = tmp_path / "other_teacher" / "ru5" / "seed1"
    other.mkdir(parents=True)
    (other / "denoiser").symlink_to(teacher / "denoiser")
    caplog.clear()
    assert distill.main(["--teacher", str(other), "--out", str(out), "--resume"]) == 2
    assert "is the student of" in caplog.text
    seed = tmp_path / "seedlike"
    (seed / "features").mkdir(parents=True)
    (seed / "denoiser").mkdir()
    caplog.clear()
    assert distill.main(["--teacher", str(teacher), "--out", str(seed), "--resume"]) == 2
    assert "--resume continues only a student folder" in caplog.text
    # a retrained teacher is noticed
    (out / "distill.json").write_text(json.dumps(rec | {"teacher_sha256": "0" * 64}))
    caplog.clear()
    assert distill.main(["--teacher", str(teacher), "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "was retrained since" in caplog.text
