"""``gather_across_devices=True`` on the sentence-transformers drop-ins at W = 2 (gloo, CPU):
equal to sentence-transformers' own losses with the same flag (loss and parameter gradients per
rank, plain and cached), and with group ids equal to the single-process loss on the whole batch."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("sentence_transformers")

import hybrid_fast as hf  # noqa: E402
from hybrid_fast.distributed.testing import run_workers  # noqa: E402

# Two spawned ranks importing sentence-transformers: about a minute on 2 cores.
pytestmark = pytest.mark.slow

W, B, D_IN, D = 2, 3, 5, 4


class TinyModel(torch.nn.Sequential):
    """A linear "SentenceTransformer": features {"x": (n, D_IN)} -> {"sentence_embedding": (n, D)}."""

    def __init__(self):
        torch.manual_seed(0)
        super().__init__(torch.nn.Linear(D_IN, D).double())

    def forward(self, features):
        return {"sentence_embedding": self[0](features["x"])}


def _columns():
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(W * B, D_IN, generator=gen, dtype=torch.float64) for _ in range(3)]  # anchor, pos, neg


GROUPS = torch.tensor([0, 1, 2, 2, 3, 0])  # rows 2/3 (same rank) and 0/5 (across ranks) share a group


def _run(loss, features, labels=None):
    loss.model.zero_grad()
    value = loss(features, labels)
    value.backward()
    return float(value.detach()), loss.model[0].weight.grad.clone()


def _worker(rank, world_size):
    from sentence_transformers.sentence_transformer import losses

    model = TinyModel()
    local = slice(rank * B, (rank + 1) * B)
    features = [{"x": column[local]} for column in _columns()]
    out = {}
    pairs = {"mnrl": (hf.MultipleNegativesRankingLoss(model, gather_across_devices=True),
                      losses.MultipleNegativesRankingLoss(model, gather_across_devices=True)),
             "cached": (hf.CachedMultipleNegativesRankingLoss(model, mini_batch_size=2, gather_across_devices=True),
                        losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=2,
                                                                  gather_across_devices=True))}
    for name, (ours, theirs) in pairs.items():
        out[name] = (_run(ours, features), _run(theirs, features))
        out[name + "_groups"] = _run(ours, features, GROUPS[local])
    return out


@pytest.fixture(scope="module")
def results():
    return run_workers(_worker, W, timeout=240)


@pytest.mark.parametrize("name", ["mnrl", "cached"])
def test_gather_equals_sentence_transformers(results, name):
    for rank in range(W):
        (ours_loss, ours_grad), (theirs_loss, theirs_grad) = results[rank][name]
        assert ours_loss == pytest.approx(theirs_loss, rel=1e-10)
        torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["mnrl", "cached"])
def test_gather_with_groups_equals_the_single_process_batch(results, name):
    model = TinyModel()
    features = [{"x": column} for column in _columns()]
    loss, grad = _run(hf.MultipleNegativesRankingLoss(model), features, GROUPS)
    # the mean of the rank losses is the global mean; DDP averages the rank gradients
    assert sum(r[name + "_groups"][0] for r in results) / W == pytest.approx(loss, rel=1e-10)
    torch.testing.assert_close(sum(r[name + "_groups"][1] for r in results) / W, grad, rtol=1e-9, atol=1e-12)
    ungrouped = sum(r[name][0][0] for r in results) / W
    assert abs(ungrouped - loss) > 1e-3  # the groups change the loss: the check can fail
