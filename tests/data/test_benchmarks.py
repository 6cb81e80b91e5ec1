"""Benchmark registry: class tables, shipped split files, configs and the paper-settings table.

Expected values are hard-coded from the shared data folder's `splits_index.json` and the upstream
repositories (see tdsm_edge/data/benchmarks/README.md); the test never reads that folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tdsm_edge.config import load_config
from tdsm_edge.data import benchmarks as bm
from tdsm_edge.errors import DataError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# sha256 of the copied upstream .npy files (splits_index.json)
UPSTREAM_SHA256 = {
    "ntu60/ru5": "f7126f7bced9262c4380cc42591b86e9f3a712183fb38b41704b2981d1177cd7",
    "ntu60/rs55": "d946d9356ab8270c48549fd82f79e840d1fb44a4d0d2a3aed90934cf459ae36d",
    "ntu60/ru12": "c47946e16daa580e5020d8826f5d951811e7a58878dec8ea7f0f59f3a40594e1",
    "ntu60/rs48": "0837f321e86c5342fe0fea1ac6e05a448ed3b60cc5078a3b07a57e9af18b18cf",
    "ntu60/ru20": "1ca30ef9958c5ba002ea3ea754d1d4fbcf780685a249978cfff38323b586f8ab",
    "ntu60/rs40": "999ec2772e2a6815f0575c7d63d8c1187bc61cc7d29aa81198cf9085ae11f2ec",
    "ntu60/ru30": "6574be9ef64fcc95faeba8d3c126ffd3dc6222b54804d97d6b3c7979699b12a0",
    "ntu60/rs30": "5ab58609d73264f85cc2f5b873ab5f2c4bdc8ad35f9818b5fb02a020dbe068d9",
    "ntu60/rv5_0": "a45f9ffad36151277598edae3e204b109369231bcdce30bba91b49aa1557b24b",
    "ntu60/rs50_0": "fa0d2914833970aa8c843d5138766746f2f5a6d32a00a7f8c64056ee8341c4c7",
    "ntu60/rv12_0": "68aba2b281921ba74811513a905a5f59ad4b85b4902d7f1079151b6bcac6970d",
    "ntu60/rs36_0": "e83eb095dfad19f3f3eef1c58222af352fbd26054cb5e40abf4da683407233d8",
    "ntu120/ru10": "8bfa5f02bcefc02c44ba581a4940754f15bf1eecd162549403525a842bcdbd20",
    "ntu120/rs110": "19427ce50e18f112df744cc900bef24e168876e9e690f1e3babb30e8c41c05b8",
    "ntu120/ru24": "bcc8e7c98f9951784acc699f85dbdf8b72e5b81ae3a4fc8275bcbd7b8006c026",
    "ntu120/rs96": "eb31e385de9251eab3294f14360c0cee691508155aa2dc39941bc9da98da4cf1",
    "ntu120/ru40": "ea94573f8abfe4759b74be5b027977c1aa5d0eaddbee13e4082075da5c03ffd3",
    "ntu120/rs80": "ae5ef44980671e7d48277925e7ef09e410976c923b6e71d08f482b4aa73990ae",
    "ntu120/ru60": "bc78f140c2046c769f7a2038afe2f600fd693722f5804e81c2276addb5bcef0c",
    "ntu120/rs60": "7293af41a7cdccfaa8debdcdbe4fe9a05f2c04fcf90434aad7a2537a6d4f6801",
    "ntu120/rv10_0": "9b68b1aeeeff9e8690746c634980a2bdd9295fee3b6b556fd9fdf0248b1528a9",
    "ntu120/rs100_0": "db8330cdec65de8da4ea7eeb45e9d3dfaaad306784bb37672f6473fe7e8efe8b",
    "ntu120/rv24_0": "937497d65e3e75c09866c836cf2076a3341741b1d8cc2b820eab93cb69842fa8",
    "ntu120/rs72_0": "a1742ce18fd685a40265db1b6c8dcbc0289fd02bf60636fc0165dad5d12c54e7",
}

# sorted unseen classes: SynSE README / splits_index.json, SMIE config.py, STAR++ feeder_pku.py
UNSEEN = {
    ("ntu60", "ru5"): [10, 11, 19, 26, 56],
    ("ntu60", "ru12"): [3, 5, 9, 12, 15, 40, 42, 47, 51, 56, 58, 59],
    ("ntu120", "ru10"): [4, 13, 37, 43, 49, 65, 88, 95, 99, 106],
    ("ntu120", "ru24"): [
        5,
        9,
        11,
        16,
        18,
        20,
        22,
        29,
        35,
        39,
        45,
        49,
        59,
        68,
        70,
        81,
        84,
        87,
        93,
        94,
        104,
        113,
        114,
        119,
    ],
    ("ntu60", "smie1"): [4, 19, 31, 47, 51],
    ("ntu60", "smie2"): [12, 29, 32, 44, 59],
    ("ntu60", "smie3"): [7, 20, 28, 39, 58],
    ("ntu120", "smie4"): [3, 18, 26, 38, 41, 60, 87, 99, 102, 110],
    ("ntu120", "smie5"): [5, 12, 14, 15, 17, 42, 67, 82, 100, 119],
    ("ntu120", "smie6"): [6, 20, 27, 33, 42, 55, 71, 97, 104, 118],
    ("pku51", "smie7"): [1, 9, 20, 34, 50],
    ("pku51", "smie8"): [3, 14, 29, 31, 49],
    ("pku51", "smie9"): [2, 15, 39, 41, 43],
    ("pku51", "ru5"): [1, 9, 20, 34, 50],
    ("pku51", "ru12"): [3, 7, 11, 15, 19, 21, 25, 31, 33, 36, 43, 48],
}
NUM_UNSEEN = {
    "ru5": 5,
    "ru12": 12,
    "ru20": 20,
    "ru30": 30,
    "ru10": 10,
    "ru24": 24,
    "ru40": 40,
    "ru60": 60,
    **{f"smie{i}": 5 for i in (1, 2, 3, 7, 8, 9)},
    **{f"smie{i}": 10 for i in (4, 5, 6)},
}
MUTUAL_NTU = set(range(49, 60)) | set(range(105, 120))  # A050-A060, A106-A120


def test_class_tables_have_official_names_and_own_descriptions():
    for ds, n in bm.NUM_CLASSES.items():
        names, descs = bm.class_names(ds), bm.class_descriptions(ds)
        assert len(names) == len(descs) == n
        assert len(set(names)) == n and len(set(descs)) == n
        for d in descs:
            assert d.strip() == d and d.endswith(".") and 6 <= len(d.split()) <= 30, d
    ntu = bm.class_names("ntu120")
    assert (
        bm.class_names("ntu60") == ntu[:60] and bm.class_descriptions("ntu60") == bm.class_descriptions("ntu120")[:60]
    )
    assert (ntu[0], ntu[24], ntu[59], ntu[108], ntu[119]) == (
        "drink water",
        "reach into pocket",
        "walking apart from each other",
        "grab other person's stuff",
        "finger-guessing game (playing rock-paper-scissors)",
    )
    for i, d in enumerate(bm.class_descriptions("ntu120")):
        assert d.startswith("Two people " if i in MUTUAL_NTU else "The person "), (i, d)
    pku = bm.class_names("pku51")
    assert (pku[0], pku[28], pku[33], pku[50]) == ("bow", "put something inside pocket", "standing up", "writing")
    # a PKU-MMD class named like an NTU class has the NTU description
    ntu_desc = dict(zip(ntu, bm.class_descriptions("ntu120")))
    shared = [(n, d) for n, d in zip(pku, bm.class_descriptions("pku51")) if n in ntu_desc]
    assert len(shared) == 47 and all(ntu_desc[n] == d for n, d in shared)


def test_class_csv_action_ids():
    with (bm.CLASS_DIR / "ntu120.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["action_id"] for r in rows] == [f"A{i:03d}" for i in range(1, 121)]
    with (bm.CLASS_DIR / "pku51.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["action_id"]) for r in rows] == list(range(1, 52))


def test_copied_split_files_are_byte_identical_to_upstream():
    for stem, sha in UPSTREAM_SHA256.items():
        assert hashlib.sha256((bm.SPLIT_DIR / f"{stem}.npy").read_bytes()).hexdigest() == sha, stem


def test_every_npy_has_a_json_twin_with_the_same_list():
    npys = sorted(bm.SPLIT_DIR.glob("*/*.npy"))
    assert len(npys) == 24 + 2 * (9 + 2)  # copied + (SMIE + STAR) unseen/seen pairs
    for p in npys:
        arr = np.load(p, allow_pickle=False)
        assert arr.dtype == np.int64 and arr.ndim == 1, p
        assert json.loads(p.with_suffix(".json").read_text()) == arr.tolist(), p


def test_every_split_loads_sorted_disjoint_and_complete():
    for ds, n in bm.NUM_CLASSES.items():
        for name in bm.available_splits(ds):
            unseen, seen = bm.load_split(ds, name)
            assert unseen.dtype == seen.dtype == np.int64
            assert np.all(np.diff(unseen) > 0) and np.all(np.diff(seen) > 0)
            assert np.intersect1d(unseen, seen).size == 0
            assert np.array_equal(np.union1d(unseen, seen), np.arange(n))
            assert len(unseen) == NUM_UNSEEN[name], (ds, name)
            if (ds, name) in UNSEEN:
                assert unseen.tolist() == UNSEEN[(ds, name)], (ds, name)
    # upstream ru12 / ru10 are stored unsorted; load_split sorts them
    assert json.loads((bm.SPLIT_DIR / "ntu120" / "ru10.json").read_text()) != UNSEEN[("ntu120", "ru10")]


def test_every_shipped_file_is_used_except_the_incomplete_rs100_0():
    used = {
        f"{ds}/{stem}"
        for table in (bm.SPLITS, bm.VAL_SPLITS)
        for ds, splits in table.items()
        for pair in splits.values()
        for stem in pair
    }
    shipped = {f"{p.parent.name}/{p.stem}" for p in bm.SPLIT_DIR.glob("*/*.json")}
    assert shipped - used == {"ntu120/rs100_0"}
    assert used <= shipped


def test_gzsl_gate_validation_splits_partition_the_seen_classes():
    for ds, splits in bm.VAL_SPLITS.items():
        for name in splits:
            v, s = bm.load_val_split(ds, name)
            seen = bm.load_split(ds, name)[1]
            assert np.intersect1d(v, s).size == 0 and np.array_equal(np.union1d(v, s), seen)
            assert len(v) == NUM_UNSEEN[name]
    # the rs100_0 anomaly: upstream holds 81 of the 100 pseudo-seen classes, none >= 100
    upstream = np.load(bm.SPLIT_DIR / "ntu120" / "rs100_0.npy")
    _, s = bm.load_val_split("ntu120", "ru10")
    assert len(upstream) == 81 and len(s) == 100 and set(upstream) < set(s.tolist()) and upstream.max() < 100
    with pytest.raises(DataError, match="no GZSL-gate validation"):
        bm.load_val_split("pku51", "ru5")


def test_unknown_names_are_clear_errors():
    with pytest.raises(DataError, match="available splits: ru5, ru12, ru20, ru30, smie1, smie2, smie3"):
        bm.load_split("ntu60", "ru7")
    with pytest.raises(DataError, match="ntu60, ntu120, pku51"):
        bm.load_split("kinetics", "ru5")
    with pytest.raises(DataError, match="synthact"):
        bm.class_names("synthact")


def test_damaged_or_missing_seen_files(tmp_path, monkeypatch):
    (tmp_path / "ntu60").mkdir()
    np.save(tmp_path / "ntu60" / "u.npy", np.array([3, 1], np.int64))
    monkeypatch.setattr(bm, "SPLIT_DIR", tmp_path)
    monkeypatch.setitem(bm.SPLITS, "ntu60", {"x": ("u", "s")})
    unseen, seen = bm.load_split("ntu60", "x")  # no seen file: seen = complement
    assert unseen.tolist() == [1, 3] and len(seen) == 58 and 1 not in seen
    np.save(tmp_path / "ntu60" / "s.npy", np.arange(3, 60, dtype=np.int64))  # overlaps at 3, misses 0 and 2
    with pytest.raises(DataError, match="disjoint and cover"):
        bm.load_split("ntu60", "x")
    np.save(tmp_path / "ntu60" / "u.npy", np.array([1, 60], np.int64))
    with pytest.raises(DataError, match=r"0\.\.59"):
        bm.load_split("ntu60", "x")


def test_every_config_loads():
    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(files) >= 12 + 3
    for f in files:
        load_config(f)


def test_settings_point_to_configs_and_splits_with_paper_hyperparameters():
    assert len(bm.SETTINGS) == 12
    assert {k: s.paper_top1 for k, s in bm.SETTINGS.items() if s.paper_top1 is not None} == {
        "synse_ntu60_55_5": 86.49,
        "synse_ntu60_48_12": 56.03,
        "synse_ntu120_110_10": 74.15,
        "synse_ntu120_96_24": 65.06,
        "purls_ntu60_40_20": 36.09,
        "purls_ntu60_30_30": 25.88,
        "purls_ntu120_80_40": 36.95,
        "purls_ntu120_60_60": 27.21,
        "smie_pku51_46_5": 70.76,
    }
    benchmark_configs = {p.name for p in CONFIG_DIR.glob("*.yaml") if load_config(p).data.dataset != "synthact"}
    assert benchmark_configs == {s.config for s in bm.SETTINGS.values()}
    for name, s in bm.SETTINGS.items():
        assert name == s.name and s.split == s.splits[0]
        assert set(s.splits) <= set(bm.available_splits(s.dataset)), name
        seen_unseen = name.split("_")[-2:]  # e.g. ["55", "5"]
        for split in s.splits:
            unseen, seen = bm.load_split(s.dataset, split)
            assert [str(len(seen)), str(len(unseen))] == seen_unseen, (name, split)
        cfg = load_config(CONFIG_DIR / s.config)
        assert (cfg.name, cfg.data.dataset, cfg.data.split) == (s.config[:-5], s.dataset, s.split)
        assert (cfg.data.frames, cfg.data.protocol, cfg.data.skeletons, cfg.data.features) == (
            64,
            "xsub",
            f"data/built/{s.dataset}",
            None,
        )
        assert (
            cfg.denoiser.hidden_size,
            cfg.denoiser.depth,
            cfg.denoiser.cond_dim,
            cfg.denoiser.num_tokens,
            cfg.denoiser.mask_text_padding,
        ) == (768, 12, 2048, 35, False)
        assert (cfg.text.encoder, cfg.text.num_tokens, cfg.text.prompt_sets) == (
            "openclip:ViT-H-14",
            35,
            ("label", "description"),
        )
        assert (cfg.train.iterations, cfg.train.batch_size, cfg.train.lr, cfg.train.standardize_features) == (
            50000,
            256,
            1e-4,
            False,
        )
        assert (cfg.eval.num_noises, cfg.eval.timestep, cfg.encoder.preset, cfg.encoder.feature_dim) == (
            3,
            25,
            "paper",
            256,
        )
        # the published behaviour: no gradient clipping, the noise bank from the run seed, the pooled text
        # vector un-normalised, epsilon prediction
        assert (cfg.train.grad_clip, cfg.eval.noise_seed, cfg.text.global_norm, cfg.schedule.prediction) == (
            0.0,
            None,
            "none",
            "epsilon",
        )


def test_registry_imports_without_torch():
    code = (
        "import sys; from tdsm_edge.data import benchmarks as b; b.load_split('ntu120', 'ru10'); "
        "b.class_names('pku51'); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
