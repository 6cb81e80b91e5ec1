import numpy as np

from tdsm_edge import ActionStream, ZeroShotRecognizer
from tdsm_edge.data.synthact import generate  # stands in for a pose estimator (numpy only)

rec = ZeroShotRecognizer.load("engines/demo")  # digest, schema, files checked (digest=... pins one build)
rec.add_classes(["wave right hand"], ["A person raises the right hand and waves it from side to side."])
rec.set_open_set()  # "none of these" below the margin calibrated at export
stream = ActionStream(rec, window=64, stride=32)
clips, _ = generate([36, 4], per_class=1, seed=0)  # shake head, then wave right hand: (2, M, T, 25, 3)
for frame in np.concatenate([clip[0] for clip in clips]):  # (25, 3) camera coordinates, one frame per push
    pred = stream.push(frame)  # a Prediction every 32 frames once 64 are in, else None
    if pred is not None:
        print(f"{pred.label:18s} margin {pred.margin:.3f}  {pred.latency_ms:5.1f} ms")
print(rec.backend, rec.variant, stream.stats)  # variant: "decoupled" = the distilled student, "joint" = TDSM
