"""passes/ops/embedding.py: constant columns of an embedding table."""
import torch
import torch.nn as nn

from oneop import kept, minimize_and_check, node_of, shapes


class Emb(nn.Module):
    def __init__(self):
        super().__init__()
        self.e, self.fc = nn.Embedding(10, 6), nn.Linear(6, 2)

    def forward(self, ids):
        return self.fc(self.e(ids))


def test_constant_columns_leave_the_table():
    m = Emb().eval()
    with torch.no_grad():
        m.e.weight[:, 2] = 0.0
        m.e.weight[:, 4] = 0.7   # CONST(0.7): folds into fc's bias
    ids = torch.randint(0, 10, (2, 5))
    r = minimize_and_check(m, (ids,), batches=())
    assert kept(r.plan, node_of(r.plan, "embedding")) == [0, 1, 3, 5]
    assert shapes(r.module)["e.weight"] == (10, 4)
    for b in (1, 3):
        x = torch.randint(0, 10, (b, 5))
        torch.testing.assert_close(r.module(x), m(x), rtol=1e-4, atol=1e-5)
