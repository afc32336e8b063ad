"""Loss modules on top of :func:`hybrid_fast.infonce_loss`.

A loss works on embeddings, never on a model (the model holds no loss): :class:`InfoNCELoss`
takes embeddings; :class:`MultipleNegativesRankingLoss` is the sentence-transformers drop-in,
which embeds the features with the SentenceTransformer it is given and calls the fused loss.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
import torch.nn.functional as F

from .ops.infonce import infonce_loss


class InfoNCELoss(nn.Module):
    """``nn.Module`` wrapper of :func:`hybrid_fast.infonce_loss`.

    Args:
        scale: initial scale (1/temperature).
        learnable_scale: make the scale a parameter (stored as log-scale so it stays positive).
        symmetric, reduction, backend: as in :func:`hybrid_fast.infonce_loss`.
        normalize: L2-normalise q and p first (cosine similarity).
        gather_across_devices, process_group: cross-rank negatives under torch.distributed, as in
            :func:`hybrid_fast.infonce_loss` (the learnable scale stays an ordinary parameter:
            DDP averages its gradient like any other).

    ``forward(q, p, labels=None, q_groups=None, p_groups=None)`` returns the loss.
    """

    def __init__(self, scale: float = 20.0, *, learnable_scale: bool = False, symmetric: bool = False,
                 reduction: str = "mean", normalize: bool = False, backend: str = "auto",
                 gather_across_devices: bool = False, process_group=None):
        super().__init__()
        if learnable_scale:
            self.log_scale = nn.Parameter(torch.tensor(float(scale)).log())
        else:
            self.register_buffer("log_scale", torch.tensor(float(scale)).log(), persistent=False)
            self._fixed_scale = float(scale)
        self.learnable_scale = learnable_scale
        self.symmetric, self.reduction, self.normalize, self.backend = symmetric, reduction, normalize, backend
        self.gather_across_devices, self.process_group = gather_across_devices, process_group

    @property
    def scale(self):
        return self.log_scale.exp() if self.learnable_scale else self._fixed_scale

    def forward(self, q, p, labels=None, q_groups=None, p_groups=None):
        if self.normalize:
            q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
        return infonce_loss(q, p, labels, scale=self.scale, q_groups=q_groups, p_groups=p_groups,
                            symmetric=self.symmetric, reduction=self.reduction, backend=self.backend,
                            gather_across_devices=self.gather_across_devices, process_group=self.process_group)

    def extra_repr(self) -> str:
        return (f"scale={float(self.log_scale.exp()):.4g}, learnable_scale={self.learnable_scale}, "
                f"symmetric={self.symmetric}, reduction={self.reduction!r}, normalize={self.normalize}, "
                f"backend={self.backend!r}, gather_across_devices={self.gather_across_devices}")


class MultipleNegativesRankingLoss(nn.Module):
    """Drop-in for ``sentence_transformers.losses.MultipleNegativesRankingLoss`` on the fused kernel.

    Same constructor shape: ``MultipleNegativesRankingLoss(model, scale=20.0, similarity_fct="cos_sim")``.
    Inputs as in sentence-transformers: ``(anchor, positive)`` or ``(anchor, positive, negative_1, ...)``
    columns; the candidates are the positives followed by each negative column (column blocks),
    so query i's positive is candidate i and every other candidate is a negative.

    Args:
        model: a ``SentenceTransformer`` (anything returning ``{"sentence_embedding": ...}``).
        scale: 1/temperature (20.0 = temperature 0.05, the sentence-transformers default).
        similarity_fct: "cos_sim" (default, like sentence-transformers) or "dot_score".
        symmetric: also the passage-to-query direction (MultipleNegativesSymmetricRankingLoss).
        backend: kernel backend, see :func:`hybrid_fast.infonce_loss`.

    ``forward(sentence_features, labels=None)``: ``labels`` is ignored (as in sentence-transformers);
    pass group ids for false-negative masking through ``p_groups=`` at construction time is not
    possible per batch, so call :func:`hybrid_fast.infonce_loss` directly when you need masks.
    """

    def __init__(self, model, scale: float = 20.0, similarity_fct="cos_sim", *, symmetric: bool = False,
                 backend: str = "auto"):
        super().__init__()
        name = getattr(similarity_fct, "__name__", similarity_fct)
        if name not in ("cos_sim", "dot_score"):
            raise ValueError(f"similarity_fct must be 'cos_sim' or 'dot_score' (or those sentence_transformers.util "
                             f"functions), got {similarity_fct!r}")
        self.model = model
        self.scale = scale
        self.similarity_fct = name
        self.symmetric = symmetric
        self.backend = backend

    def forward(self, sentence_features: Iterable[dict], labels: torch.Tensor | None = None) -> torch.Tensor:
        reps = [self.model(features)["sentence_embedding"] for features in sentence_features]
        if len(reps) < 2:
            raise ValueError(f"expected at least (anchor, positive) columns, got {len(reps)} column(s)")
        return self.compute_loss_from_embeddings(reps, labels)

    def compute_loss_from_embeddings(self, reps: list[torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        anchors, candidates = reps[0], torch.cat(reps[1:])
        if self.similarity_fct == "cos_sim":
            anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
        return infonce_loss(anchors, candidates, scale=self.scale, symmetric=self.symmetric, backend=self.backend)

    def get_config_dict(self) -> dict:
        return {"scale": self.scale, "similarity_fct": self.similarity_fct, "symmetric": self.symmetric,
                "backend": self.backend}

    @property
    def citation(self) -> str:
        return "Elmahdy, Lin, Ahmad. Synergistic Approach for Simultaneous Optimization of Monolingual, " \
               "Cross-lingual, and Multilingual Information Retrieval. arXiv:2408.10536"
