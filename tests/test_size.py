"""fxminimize.size.stored_elements: every stored element once (parameters, buffers, tensor
constants, shared storages), plus the scalars (count, s1, s2) a compensated LayerNorm keeps in
the graph; used by the report, masks.count_stored, deployable_size and the compile backend."""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

import fxminimize
from fxminimize.training import measure as sr
from fxminimize.compensated import COMPENSATED_LAYER_NORM, CompensatedLayerNorm, CompensatedRMSNorm
from fxminimize.masks import count_stored
from fxminimize.size import COMPENSATED_SCALARS, graph_scalar_elements, stored_elements, tensor_elements


def _plain(module):
    return sum(t.numel() for t in list(module.parameters()) + list(module.buffers()))


class ResidualMLP(nn.Module):
    """x → inp → stream h; h + fc(ln(h)) → out. Stream channel 2 is a dead constant: inp
    writes CONST(0.7) there, ln's γ is 0 there and fc adds a constant, so minimize removes it
    through the LayerNorm, which becomes compensated (count 6, s1, s2)."""

    def __init__(self):
        super().__init__()
        self.inp, self.ln, self.fc, self.out = nn.Linear(8, 6), nn.LayerNorm(6), nn.Linear(6, 6), nn.Linear(6, 3)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-1, 1)
            self.inp.weight[2].zero_()
            self.inp.bias[2] = 0.7
            self.ln.weight[2] = 0
            self.fc.weight[2].zero_()

    def forward(self, x):
        h = self.inp(x)
        h = h + self.fc(self.ln(h))
        return self.out(h)


def test_minimized_compensated_layer_norm_counts_its_scalars(tmp_path):
    torch.manual_seed(0)
    m = ResidualMLP().eval()
    res = fxminimize.minimize(m, (torch.randn(4, 8),))
    small = res.module
    nodes = [n for n in small.graph.nodes if n.target is COMPENSATED_LAYER_NORM]
    assert len(nodes) == 1 and nodes[0].args[1] == 6            # count C of the full width
    assert tuple(small.get_parameter("inp.weight").shape) == (5, 8)
    expected = _plain(small) + COMPENSATED_SCALARS
    assert graph_scalar_elements(small) == COMPENSATED_SCALARS == 3
    assert stored_elements(small) == expected
    assert count_stored(small) == sr.deployable_size(small) == expected
    assert res.report.params_after == expected
    assert res.report.params_before == stored_elements(m) == _plain(m)
    # a saved and loaded program still carries the node, and its scalars
    res.save(str(tmp_path / "m.pt2"))
    assert stored_elements(fxminimize.load(str(tmp_path / "m.pt2"))) == expected


def test_compensated_modules_count_their_scalars():
    ln = CompensatedLayerNorm(4, 6, s1=0.5, s2=0.25)
    assert stored_elements(ln) == 8 + 3
    assert stored_elements(CompensatedRMSNorm(4, 6, s2=1.0)) == 4 + 2


def test_each_storage_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight                      # tied: one tensor
            self.register_buffer("view", self.emb.weight.detach()[:5])   # a view into the same storage
            self.register_buffer("t", self.emb.weight.detach().t())     # same elements, other layout

    assert stored_elements(Tied()) == 40
    w = torch.zeros(6, 4)
    assert tensor_elements([w[:2], w[1:3]]) == 12                 # overlapping views: rows 0..2
    assert tensor_elements([w[:2], w[4:]]) == 16
    assert tensor_elements([w, w]) == 24


def test_graph_tensor_constants_are_counted():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) + torch.tensor([1.0, 2.0, 3.0])

    gm = fx.symbolic_trace(M())
    gm.const = torch.ones(5)                                      # a plain attribute, not a buffer
    g = gm.graph
    out = next(n for n in g.nodes if n.op == "output")
    with g.inserting_before(out):
        c = g.get_attr("const")
        s = g.call_function(torch.sum, (c,))
        new = g.call_function(torch.add, (out.args[0], s))
    out.args = (new,)
    gm.recompile()
    # fc (12), the traced torch.tensor constant (_tensor_constant0, 3) and the attribute (5)
    assert [n.target for n in gm.graph.nodes if n.op == "get_attr"] == ["_tensor_constant0", "const"]
    assert stored_elements(gm) == 12 + 3 + 5


def test_meta_tensors_count_by_shape():
    m = nn.Linear(4, 3, device="meta")
    assert stored_elements(m) == 15
