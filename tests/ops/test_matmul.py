"""passes/ops/matmul.py: matmul/bmm with a constant weight (a Linear stored (in, out)) and
between two activations (batch, free and contracted channel dims).

Numerics: minimize_and_check compares the masked original and the result on random inputs at
batch 1 and 7 (assert_close, rtol 1e-4, atol 1e-5 · max(1, max|y|); tests/helpers.py)."""
import torch
import torch.nn as nn

from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class WeightForm(nn.Module):
    """y = relu(x @ W1 + b1) @ W2, W stored (in, out); and Falcon's x @ W.T."""

    def __init__(self, transposed=False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.transposed = transposed
        self.w1 = nn.Parameter(torch.randn(4, 8, generator=g) if not transposed else torch.randn(8, 4, generator=g))
        self.b1 = nn.Parameter(torch.randn(8, generator=g))
        self.w2 = nn.Parameter(torch.randn(8, 3, generator=g))

    def forward(self, x):
        w1 = self.w1.T if self.transposed else self.w1
        return torch.relu(x @ w1 + self.b1) @ self.w2


def test_weight_form_folds_constant_into_an_added_bias():
    m = WeightForm().eval()
    with torch.no_grad():
        m.w1[:, [2, 5]] = 0          # h_2, h_5 = relu(b1) : CONST, folded into W2's new bias
        m.b1[2], m.b1[5] = 0.7, -0.3
        m.w2[[1]] = 0                # h_1 is read by nothing
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    mm = node_of(r.plan, "matmul")
    assert kept(r.plan, mm) == [0, 3, 4, 6, 7]   # 2, 5 CONST (folded), 1 unread
    cm, cv = const(r.plan, mm)
    assert cm[[2, 5]].all() and cv[2] == 0 and cv[5] == 0  # x @ W1 is ZERO there; + b1 follows
    s = shapes(r.module)
    (bias,) = [k for k in s if k.startswith("w2_bias")]
    assert (s["w1"], s["w2"], s[bias]) == ((4, 5), (5, 3), (3,))  # bias: relu(0.7)·W2[2]
    assert "add" in r.module.code


def test_weight_form_transposed_parameter():
    m = WeightForm(transposed=True).eval()
    with torch.no_grad():
        m.w1[[0, 3]] = 0             # rows of W (out, in): x @ W.T is ZERO on 0 and 3
        m.b1[[0, 3]] = -1.0          # relu(-1) = 0: ZERO, nothing to fold
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert sum(t.numel() for t in r.module.state_dict().values()) == 6 * 4 + 6 + 6 * 3
    assert "add_1" not in r.module.code  # no fold, no added bias


class Heads(nn.Module):
    """relu(q @ kᵀ) @ v per head (no softmax: not an attention region), then o-proj."""

    def __init__(self, H=3, D=4):
        super().__init__()
        self.H, self.D = H, D
        self.q, self.k, self.v = nn.Linear(6, H * D), nn.Linear(6, H * D), nn.Linear(6, H * D)
        self.o = nn.Linear(H * D, 5)

    def split(self, t):
        B, T, _ = t.shape
        return t.view(B, T, self.H, self.D).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        p = torch.relu(q @ k.transpose(-1, -2)) * 0.5
        o = (p @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], self.H * self.D)
        return self.o(o)


def test_batch_dim_removes_a_dead_head():
    m = Heads().eval()
    dead(m.v, list(range(4, 8)), bias=0.0)   # v head 1 ZERO -> (p @ v) head 1 ZERO
    r = minimize_and_check(m, (torch.randn(2, 7, 6),))
    pv = node_of(r.plan, "matmul", 1)
    assert kept(r.plan, pv) == [0, 2]
    assert not any(b.op == "matmul.default" for b in r.report.barriers)
    s = shapes(r.module)
    assert s["q.weight"] == s["k.weight"] == s["v.weight"] == (8, 6) and s["o.weight"] == (5, 8)


def test_batch_dim_zero_query_head():
    m = Heads().eval()
    dead(m.q, list(range(8, 12)), bias=0.0)  # q head 2 ZERO -> scores ZERO -> relu 0 -> out ZERO
    r = minimize_and_check(m, (torch.randn(2, 7, 6),))
    qk = node_of(r.plan, "matmul", 0)
    cm, cv = const(r.plan, qk)
    assert cm.tolist() == [False, False, True] and cv[2] == 0
    assert shapes(r.module)["v.weight"] == (8, 6) and shapes(r.module)["o.weight"] == (5, 8)


class Contracted(nn.Module):
    """s = a(x) @ b(x)ᵀ: the channel dim of both operands is contracted."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)

    def forward(self, x):
        return self.a(x) @ self.b(x).transpose(1, 2)


def test_contracted_dim_couples_operands():
    m = Contracted().eval()
    dead(m.a, [1, 4], bias=0.0)   # a's channels 1, 4 ZERO: their terms vanish, b's go with them
    dead(m.b, [2], bias=0.0)      # b's channel 2 ZERO: a's channel 2 goes too
    dead(m.b, [3], bias=0.5)      # b's channel 3 CONST(0.5): a_3 · 0.5 is not 0, kept
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert kept(r.plan, node_of(r.plan, "linear", 0)) == [0, 3, 5]
    assert kept(r.plan, node_of(r.plan, "linear", 1)) == [0, 3, 5]
    assert shapes(r.module)["a.weight"] == shapes(r.module)["b.weight"] == (3, 4)


class Free(nn.Module):
    """h = a(x)ᵀ @ x: a's channel is the free row dim of the product."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x).transpose(1, 2) @ x        # (B, 6, 4)
        return self.fc(h.transpose(1, 2))


def test_free_dim_carries_channels():
    m = Free().eval()
    dead(m.a, [0, 5], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert kept(r.plan, node_of(r.plan, "matmul")) == [1, 2, 3, 4]
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["fc.weight"] == (3, 4)


class Mismatch(nn.Module):
    """a(x) @ y with y an input: a's channels are contracted with an untracked dim."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)

    def forward(self, x, y):
        return self.a(x) @ y


def test_contracted_with_untracked_is_a_barrier():
    m = Mismatch().eval()
    dead(m.a, [1], bias=0.0)
    ex = (torch.randn(2, 5, 4), torch.randn(2, 6, 3))
    r = minimize_and_check(m, ex)
    assert shapes(r.module)["a.weight"] == (6, 4)
    (b,) = [b for b in r.report.barriers if b.op == "matmul.default"]
    assert "contracted with an untracked" in b.reason and b.channels_kept == 6
