"""Predictions while other threads change the class set: every Prediction comes from ONE class snapshot.

Its label, index, scores and class list must agree with each other and with the errors of those
classes computed alone (a reference recognizer that holds every class), whatever the other threads
select or add meanwhile.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from tdsm_edge.runtime import ZeroShotRecognizer

PREDICTORS, DURATION_S = 6, 4.0
NEW = [
    ("wave twice", "A person waves the right hand twice."),
    ("stamp foot", "A person stamps the left foot."),
    ("nod", "A person nods the head up and down."),
    ("spin arms", "A person swings both arms in circles."),
    ("lean left", "A person leans the upper body to the left."),
    ("squat", "A person squats down and stands up."),
]


def test_predictions_belong_to_one_class_snapshot_while_classes_change(text_bundle, runtime_bundle):
    windows = runtime_bundle.windows(per_class=2, seed=5)  # (10, 2, T, V, 3)
    ref = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    ref.add_classes([n for n, _ in NEW], [d for _, d in NEW])
    want = {i: dict(zip(ref.classes, p.errors)) for i, p in enumerate(ref.predict_batch(list(windows)))}

    rec = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[tuple[int, object]] = []
    changes = {"select": 0, "add": 0}

    def predictor(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                i = int(rng.integers(len(windows)))
                seen.append((i, rec.predict(windows[i])))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def selector() -> None:
        rng = np.random.default_rng(99)
        try:
            while not stop.is_set():
                names = rec.all_classes
                k = int(rng.integers(1, len(names) + 1))
                rec.set_active_classes(list(rng.permutation(names)[:k]))
                changes["select"] += 1
                if changes["select"] % 50 == 0:
                    rec.set_active_classes(None)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def adder() -> None:
        try:
            for name, desc in NEW:
                time.sleep(DURATION_S / (len(NEW) + 1))
                rec.add_classes([name], [desc])
                changes["add"] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    pool = [threading.Thread(target=predictor, args=(s,)) for s in range(PREDICTORS)]
    pool += [threading.Thread(target=selector), threading.Thread(target=adder)]
    for th in pool:
        th.start()
    time.sleep(DURATION_S)
    pool[-1].join(timeout=60)
    stop.set()
    for th in pool:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in pool), "a thread hung"
    if errors:
        raise errors[0]
    assert changes["add"] == len(NEW) and changes["select"] > 100 and len(seen) > 300, (changes, len(seen))
    torn = []
    for i, p in seen:
        ok = (
            len(p.errors) == len(p.classes)
            and p.index == int(np.argmin(p.errors))
            and p.label == p.classes[p.index]
            and np.allclose(p.errors, [want[i][c] for c in p.classes], rtol=1e-5, atol=1e-6)
        )
        if not ok:
            torn.append((i, p.label, p.classes, p.errors))
    assert not torn, f"{len(torn)} of {len(seen)} predictions mix class sets, e.g. {torn[0]}"
    assert len({p.classes for _, p in seen}) > 50  # the class set really changed under the predictions
