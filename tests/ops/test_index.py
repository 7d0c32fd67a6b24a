"""passes/ops/index.py: index.Tensor gathers off the channel dim keep channels one to one.

Numerics: minimize_and_check (assert_close, rtol 1e-4, atol 1e-5 · max(1, max|y|))."""
import torch
import torch.nn as nn

from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class Rows(nn.Module):
    """y = fc(a(x)[perm]) with perm computed from the data (MoE token sorting)."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)                      # (S, 6)
        order = x[:, 0].argsort()
        return self.fc(h[order])


def test_row_gather_passes_channels():
    m = Rows().eval()
    dead(m.a, [1], bias=0.0)      # ZERO: removed
    dead(m.a, [4], bias=0.25)     # CONST(0.25): stays CONST through the gather, folded into fc
    r = minimize_and_check(m, (torch.randn(5, 4),))
    ix = node_of(r.plan, "index")
    assert kept(r.plan, ix) == [0, 2, 3, 5]
    cm, cv = const(r.plan, ix)
    assert cm.tolist() == [False, True, False, False, True, False] and cv[4] == 0.25
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["fc.weight"] == (3, 4)
    assert not r.report.barriers


class Positions(nn.Module):
    """x (B, T, C) gathered on the sequence dim by a constant index (None on the batch dim)."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)
        self.register_buffer("pos", torch.tensor([[0, 2], [1, 1]]))

    def forward(self, x):
        return self.fc(self.a(x)[:, self.pos])      # (B, 2, 2, 6): channel dim moves from 2 to 3


def test_gather_on_a_middle_dim_moves_the_channel_dim():
    m = Positions().eval()
    dead(m.a, [0, 5], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 3, 4),))
    assert r.plan.axis[node_of(r.plan, "index")] == 3
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["fc.weight"] == (3, 4)


class OnChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(3, 2)
        self.register_buffer("sel", torch.tensor([0, 1, 4]))

    def forward(self, x):
        return self.fc(self.a(x)[:, self.sel])


def test_index_on_the_channel_dim_with_a_constant_list_selects_channels():
    m = OnChannels().eval()
    dead(m.a, [1], bias=0.0)          # selected as output 1, ZERO: goes; 2, 3, 5 are not selected
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (2, 4) and shapes(r.module)["fc.weight"] == (2, 2)
    assert r.module.get_buffer("sel").tolist() == [0, 1]
    assert not r.report.barriers


class OnChannelsComputed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(3, 2)

    def forward(self, x):
        sel = self.a(x)[0, :3].abs().argsort()   # an index computed from the data
        return self.fc(self.a(x)[:, sel])


def test_index_on_the_channel_dim_computed_from_data_is_a_barrier():
    m = OnChannelsComputed().eval()
    dead(m.a, [1], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (6, 4)
    (b,) = [b for b in r.report.barriers if b.op == "index.Tensor"]
    assert b.reason == "indexes the channel dimension" and b.channels_kept == 6


# ---- index_select (IndexSelectRule) ----------------------------------------------------------

class Select(nn.Module):
    """fc(a(x)[..., idx]) with a constant channel index (a permutation with a repeat and a skip)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.a, self.fc, self.dim = nn.Linear(4, 6), nn.Linear(6, 3), dim
        self.register_buffer("idx", torch.tensor([5, 0, 2, 2, 4, 1]))

    def forward(self, x):
        return self.fc(torch.index_select(self.a(x), self.dim, self.idx))


def test_index_select_on_channels_maps_output_j_to_input_idx_j():
    torch.manual_seed(0)
    m = Select().eval()
    dead(m.a, [2], bias=0.0)      # ZERO: read by outputs 2 and 3, which go with it
    dead(m.a, [4], bias=0.5)      # CONST(0.5) at output 4: folded into fc
    with torch.no_grad():
        m.a.weight[3] = 1.0       # channel 3 is selected by no output: a's row 3 goes
    r = minimize_and_check(m, (torch.randn(2, 4),))
    n = node_of(r.plan, "index_select")
    assert kept(r.plan, n) == [0, 1, 5]
    cm, cv = const(r.plan, n)
    assert cm.tolist() == [False, False, True, True, True, False] and cv[4] == 0.5
    s = shapes(r.module)
    assert s["a.weight"] == (3, 4) and s["fc.weight"] == (3, 3)
    assert not r.report.barriers


def test_index_select_off_the_channel_dim_passes_channels_through():
    torch.manual_seed(1)
    m = Select(dim=1).eval()      # x (B, 6 positions, 4): idx gathers positions
    dead(m.a, [1, 3], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 6, 4),))
    assert kept(r.plan, node_of(r.plan, "index_select")) == [0, 2, 4, 5]
    assert shapes(r.module)["fc.weight"] == (3, 4) and shapes(r.module)["idx"] == (6,)


class Gathered(nn.Module):
    """A model whose first minimize emits all three kinds of gathers: the input gather (unread
    features), a LayerNorm's scale-zero outputs gathered, and a Linear reading its live columns."""

    def __init__(self):
        super().__init__()
        self.a, self.n, self.b, self.c = nn.Linear(10, 8), nn.LayerNorm(8), nn.Linear(8, 6), nn.Linear(6, 3)
        with torch.no_grad():
            self.n.weight.add_(0.1 * torch.randn(8))
            self.n.bias.add_(0.1 * torch.randn(8))

    def forward(self, x):
        return self.c(torch.relu(self.b(self.n(self.a(x)))))


def _gathers(module):
    return [n for n in module.graph.nodes if n.target is torch.ops.aten.index_select.default]


def test_a_minimized_model_minimizes_again_through_its_own_gathers():
    torch.manual_seed(2)
    m = Gathered().eval()
    with torch.no_grad():
        m.a.weight[:, [1, 4]] = 0               # input features 1 and 4 unread: input gather
        m.n.weight[[2, 5]] = 0                  # scale-zero LN outputs: gathered after the norm
        m.b.weight[0] = 0
        m.b.bias[0] = 0
    x = torch.randn(4, 10)
    r1 = minimize_and_check(m, (x,))
    assert len(_gathers(r1.module)) == 2
    # unchanged: a second minimize meets no barrier, removes nothing and is not larger
    again = minimize_and_check(r1.module, (x,))
    assert not again.report.barriers and again.report.params_after <= again.report.params_before
    # Squeeze-Release: more of the minimized model is pruned, then it is minimized again
    m2 = r1.module
    with torch.no_grad():
        m2.get_parameter("b.weight")[1] = 0
        m2.get_parameter("b.bias")[1] = 0
        m2.get_parameter("a.weight")[:, 0] = 0   # one more input feature unread
    r2 = minimize_and_check(m2, (x,))
    assert not r2.report.barriers
    s = shapes(r2.module)
    assert s["a.weight"] == (8, 7) and s["b.weight"] == (4, 6) and s["c.weight"] == (3, 4)
    assert len(_gathers(r2.module)) == 2         # still one input gather and one norm gather
    assert r2.report.params_after < r2.report.params_before


class Packed(nn.Module):
    """Falcon's packed heads: fused (B, T, (H + 2)·D) viewed as (B, T, H + 2, D); the key head is
    ``fused[..., [-2], :]`` (index.Tensor on the head dim). (Falcon takes the queries with the
    slice ``[..., :-2, :]``, which is still a barrier on the channel dim; here a list.)"""

    def __init__(self):
        super().__init__()
        self.qkv, self.fq, self.fk = nn.Linear(4, 12), nn.Linear(8, 3), nn.Linear(2, 3)
        self.register_buffer("kidx", torch.tensor([-2]))
        self.register_buffer("qidx", torch.tensor([0, 1, 2, 3]))

    def forward(self, x):
        B, T, _ = x.shape
        h = self.qkv(x).view(B, T, 6, 2)
        q, k = h[:, :, self.qidx, :], h[:, :, self.kidx, :]
        return self.fq(q.reshape(B, T, 8)) + self.fk(k.reshape(B, T, 2))


def test_index_on_the_channel_dim_with_a_constant_index_is_a_channel_gather():
    torch.manual_seed(3)
    m = Packed().eval()
    dead(m.qkv, [2, 3], bias=0.0)          # query head 1 (features 2, 3): ZERO
    dead(m.qkv, [10, 11], bias=0.0)        # the value head (-1), read by nothing: goes as well
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert not r.report.barriers
    s = shapes(r.module)
    assert s["qkv.weight"] == (8, 4) and s["fq.weight"] == (3, 6) and s["fk.weight"] == (3, 2)
    assert r.module.get_buffer("kidx").tolist() == [3]   # head 4 of 6 → position 3 of the 4 kept
    assert r.module.get_buffer("qidx").tolist() == [0, 1, 2]
