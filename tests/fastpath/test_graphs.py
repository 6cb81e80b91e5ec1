"""GraphCache's bookkeeping on CPU: capture is emulated (replay re-runs the forward on the static
buffers captured), so what is tested is which buffers a replay reads after class-set changes and
which (B, K, masked) shapes get their own graph. Real capture / replay: test_gpu.py."""

from __future__ import annotations

import dataclasses

import torch

from tdsm_edge.config import ScheduleConfig
from tdsm_edge.fastpath.graphs import GraphCache, _Captured
from tdsm_edge.fastpath.scorer import FastScorer
from tdsm_edge.models.class_tables import ClassTables, class_tables
from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.models.schedule import DDPMSchedule
from tdsm_edge.scoring import noise_bank


class EmulatedGraphs(GraphCache):
    def _capture(self, z, static):
        z_static = z.detach().clone()
        frozen = dataclasses.replace(static)  # the same buffers; has_mask fixed at capture, as in a graph
        forward = self._forward
        out = forward(z_static, frozen)

        class Replay:
            def replay(self):
                out.copy_(forward(z_static, frozen))

        return _Captured(Replay(), z_static, out)


def test_static_buffers_follow_the_active_class_set(tiny, stats):
    model = tiny.model()
    folded = FoldedScorer(model, DDPMSchedule(ScheduleConfig()), noise_bank(3, 16, 0), tiny.t, stats).eval()
    fc, fl, mask = tiny.text(8, seed=5)
    full = ClassTables.from_dict(class_tables(model, fc, fl, mask, tiny.t))
    set_a, set_b = full.select([0, 1, 2, 3]), full.select([7, 6, 5, 4])
    unmasked = ClassTables.from_dict(class_tables(model, fc, fl, None, tiny.t)).select([4, 5, 6, 7])
    fast = FastScorer(folded, "fp32")
    fast.graphs = EmulatedGraphs(fast.forward)
    z = tiny.features(5)
    with torch.no_grad():
        eager = {id(t): fast.forward(z, fast.prepare(t)) for t in (set_a, set_b, unmasked)}
    ptrs = None
    for tables in (set_a, set_b, set_a, unmasked, set_b):
        torch.testing.assert_close(fast(z, tables), eager[id(tables)], rtol=0, atol=0)
        static = fast.graphs._static[4][0]
        ptrs = ptrs or [t.data_ptr() for t in static.tensors().values()]
        assert [t.data_ptr() for t in static.tensors().values()] == ptrs  # refreshed in place, never reallocated
    assert fast.graphs.shapes == [(5, 4, False), (5, 4, True)]
    fast(z[:2], set_a)
    assert fast.graphs.shapes == [(2, 4, True), (5, 4, False), (5, 4, True)]
    fast.graphs.clear()
    assert fast.graphs.shapes == []
