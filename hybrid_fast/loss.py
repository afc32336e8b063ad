"""Loss modules on top of :func:`hybrid_fast.infonce_loss`.

A loss works on embeddings, never on a model (the model holds no loss): :class:`InfoNCELoss`
takes embeddings; :class:`MultipleNegativesRankingLoss` and :class:`CachedMultipleNegativesRankingLoss` are the
sentence-transformers drop-ins, which embed the features with the SentenceTransformer they are
given and call the fused loss (group ids in the ``label`` column mask false negatives).
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


_DIRECTIONS = {("query_to_doc",): False, ("query_to_doc", "doc_to_query"): True}


class MultipleNegativesRankingLoss(nn.Module):
    """Drop-in for ``sentence_transformers.losses.MultipleNegativesRankingLoss`` on the fused kernel.

    Same constructor as sentence-transformers 6.x: ``MultipleNegativesRankingLoss(model, scale=20.0,
    similarity_fct=cos_sim, gather_across_devices=False, directions=("query_to_doc",),
    partition_mode="joint", hardness_mode=None, hardness_strength=0.0)``.
    Inputs as in sentence-transformers: ``(anchor, positive)`` or ``(anchor, positive, negative_1, ...)``
    columns; the candidates are the positives followed by each negative column (column blocks),
    so query i's positive is candidate i and every other candidate is a negative.

    False-negative masking: ``labels`` (the dataset's ``label`` column, which sentence-transformers'
    collator hands to the loss) are read as non-negative int group ids, one per row: candidate j
    (positive of row j) is no negative of query i when ``labels[j] == labels[i]``, j != i (the same
    passage in another language, a duplicate). Hard-negative columns are never masked. Without a
    label column (``labels=None``) the loss is exactly sentence-transformers' MNRL.

    Args:
        model: a ``SentenceTransformer`` (anything returning ``{"sentence_embedding": ...}``).
        scale: 1/temperature (20.0 = temperature 0.05, the sentence-transformers default).
        similarity_fct: "cos_sim" (default, like sentence-transformers) or "dot_score" (names or
            those ``sentence_transformers.util`` functions).
        gather_across_devices: score each rank's queries against the candidates of every rank
            (sentence-transformers' semantics), through ``infonce_loss(gather_across_devices=True)``
            (group ids travel with their rows: a group-mate on another rank is masked too).
        directions / partition_mode: ``("query_to_doc",)`` (default) or ``("query_to_doc",
            "doc_to_query")`` with ``partition_mode="per_direction"`` (the symmetric loss, one softmax
            per direction averaged: ``MultipleNegativesSymmetricRankingLoss``).
        hardness_mode / hardness_strength: only ``None`` / 0 (no hardness weighting).
        symmetric: shorthand for the two directions above.
        backend: kernel backend, see :func:`hybrid_fast.infonce_loss`.
        process_group: the ``torch.distributed`` group ``gather_across_devices`` gathers over
            (default: the world, as sentence-transformers).

    Raises:
        ValueError: unknown ``similarity_fct``, ``directions`` or ``partition_mode``.
        NotImplementedError: directions / partition modes / hardness weighting the fused kernel
            does not compute (``query_to_query``, ``doc_to_doc``, a joint two-direction softmax,
            ``hardness_mode``).
    """

    def __init__(self, model, scale: float = 20.0, similarity_fct="cos_sim", gather_across_devices: bool = False,
                 directions: tuple[str, ...] = ("query_to_doc",), partition_mode: str = "joint",
                 hardness_mode: str | None = None, hardness_strength: float = 0.0, *, symmetric: bool = False,
                 backend: str = "auto", process_group=None):
        super().__init__()
        name = getattr(similarity_fct, "__name__", similarity_fct)
        if name not in ("cos_sim", "dot_score"):
            raise ValueError(f"similarity_fct must be 'cos_sim' or 'dot_score' (or those sentence_transformers.util "
                             f"functions), got {similarity_fct!r}")
        known = {"query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"}
        directions = tuple(directions)
        if "query_to_doc" not in directions or not set(directions) <= known:
            raise ValueError(f"directions: expected 'query_to_doc' plus any of {sorted(known - {'query_to_doc'})}, "
                             f"got {directions!r}")
        if partition_mode not in ("joint", "per_direction"):
            raise ValueError(f"partition_mode: expected 'joint' or 'per_direction', got {partition_mode!r}")
        if symmetric:
            directions, partition_mode = ("query_to_doc", "doc_to_query"), "per_direction"
        key = tuple(sorted(directions, key=("query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc").index))
        if key not in _DIRECTIONS or (len(key) > 1 and partition_mode != "per_direction"):
            raise NotImplementedError(
                f"directions={directions!r}, partition_mode={partition_mode!r}: the fused kernel computes "
                "('query_to_doc',) and ('query_to_doc', 'doc_to_query') with partition_mode='per_direction'; "
                "use sentence_transformers.losses.MultipleNegativesRankingLoss for the others")
        if hardness_mode is not None and hardness_strength > 0.0:
            raise NotImplementedError(f"hardness_mode={hardness_mode!r}: hardness weighting is not computed by the "
                                      "fused kernel; use sentence_transformers.losses.MultipleNegativesRankingLoss")
        self.model = model
        self.scale = scale
        self.similarity_fct = name
        self.gather_across_devices, self.process_group = bool(gather_across_devices), process_group
        self.directions, self.partition_mode = key, partition_mode
        self.hardness_mode, self.hardness_strength = hardness_mode, hardness_strength
        self.symmetric = _DIRECTIONS[key]
        self.backend = backend

    def forward(self, sentence_features: Iterable[dict], labels: torch.Tensor | None = None) -> torch.Tensor:
        reps = [self.model(features)["sentence_embedding"] for features in sentence_features]
        if len(reps) < 2:
            raise ValueError(f"expected at least (anchor, positive) columns, got {len(reps)} column(s)")
        return self.compute_loss_from_embeddings(reps, labels)

    def compute_loss_from_embeddings(self, reps: list[torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of embeddings ``reps`` = [anchors (B, d), positives (B, d), negatives (B, d)...]
        with optional group ids ``labels`` (B,) (see the class docstring)."""
        anchors, candidates = reps[0], torch.cat(reps[1:])
        if self.similarity_fct == "cos_sim":
            anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
        q_groups, p_groups = self._groups(labels, anchors.shape[0], candidates.shape[0], anchors.device)
        return infonce_loss(anchors, candidates, scale=self.scale, q_groups=q_groups, p_groups=p_groups,
                            symmetric=self.symmetric, backend=self.backend,
                            gather_across_devices=self.gather_across_devices, process_group=self.process_group)

    @staticmethod
    def _groups(labels, batch: int, candidates: int, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(q_groups, p_groups)`` from per-row group ids: positives carry their row's id, hard
        negatives -1 (never equal to a query's id, so never masked)."""
        if labels is None:
            return None, None
        if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"labels: expected integer group ids (the dataset's 'label' column) or None, got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)}; MultipleNegativesRankingLoss reads "
                             "the label column as false-negative groups, so remove float score columns")
        if labels.shape != (batch,):
            raise ValueError(f"labels: expected shape ({batch},) (one group id per row), got {tuple(labels.shape)}")
        q_groups = labels.to(device=device, dtype=torch.int64)
        if bool((q_groups < 0).any()):
            raise ValueError("labels: expected non-negative group ids (negative ids are reserved for hard negatives)")
        p_groups = torch.cat([q_groups, q_groups.new_full((candidates - batch,), -1)])
        return q_groups, p_groups

    def get_config_dict(self) -> dict:
        return {"scale": self.scale, "similarity_fct": self.similarity_fct,
                "gather_across_devices": self.gather_across_devices, "directions": self.directions,
                "partition_mode": self.partition_mode, "backend": self.backend}

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    @property
    def citation(self) -> str:
        return "Elmahdy, Lin, Ahmad. Synergistic Approach for Simultaneous Optimization of Monolingual, " \
               "Cross-lingual, and Multilingual Information Retrieval. arXiv:2408.10536"


def _gradcache():
    """sentence-transformers' GradCache machinery (imported on use: ``import hybrid_fast`` never
    imports sentence-transformers)."""
    try:
        from sentence_transformers.base.losses.gradcache import CachedLossMixin
    except ImportError as exc:
        raise ImportError("CachedMultipleNegativesRankingLoss needs sentence-transformers >= 6 "
                          "(pip install 'hybrid_fast[train]')") from exc
    return CachedLossMixin


class CachedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """Drop-in for ``sentence_transformers.losses.CachedMultipleNegativesRankingLoss`` (GradCache,
    Gao et al. 2021) with the loss and its embedding gradients from the fused kernel.

    Same constructor as sentence-transformers 6.x: ``(model, scale=20.0, similarity_fct=cos_sim,
    mini_batch_size=32, mini_batch_num_tokens=None, gather_across_devices=False,
    directions=("query_to_doc",), partition_mode="joint", show_progress_bar=False,
    hardness_mode=None, hardness_strength=0.0)`` (the supported directions, partition modes and
    masking by ``labels`` as :class:`MultipleNegativesRankingLoss`).

    Semantics as sentence-transformers' class: (1) every column is embedded in mini-batches of
    ``mini_batch_size`` without a graph, saving each mini-batch's RNG state; (2) the loss of the
    whole batch and its gradient w.r.t. the embeddings; (3) in backward, each mini-batch is
    re-embedded with its RNG state replayed (same dropout) and back-propagated with its cached
    gradient. Steps (1) and (3) are sentence-transformers' own code (``CachedLossMixin``: DDP
    no_sync handling, token-budget mini-batches); step (2) is one fused kernel call instead of
    sentence-transformers' chunked (mini_batch_size x B) score matrices.

    Memory of step (2): O((B + N) * d) for the embeddings and their gradients plus one score tile
    (see :func:`hybrid_fast.infonce_loss`); never a (B, N) matrix.
    """

    uses_gradient_cache = True

    def __init__(self, model, scale: float = 20.0, similarity_fct="cos_sim", mini_batch_size: int = 32,
                 mini_batch_num_tokens: int | None = None, gather_across_devices: bool = False,
                 directions: tuple[str, ...] = ("query_to_doc",), partition_mode: str = "joint",
                 show_progress_bar: bool = False, hardness_mode: str | None = None, hardness_strength: float = 0.0,
                 *, symmetric: bool = False, backend: str = "auto", process_group=None):
        super().__init__(model, scale, similarity_fct, gather_across_devices, directions, partition_mode,
                         hardness_mode, hardness_strength, symmetric=symmetric, backend=backend,
                         process_group=process_group)
        if not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ValueError(f"mini_batch_size: expected a positive int, got {mini_batch_size!r}")
        if mini_batch_num_tokens is not None and (not isinstance(mini_batch_num_tokens, int) or mini_batch_num_tokens < 1):
            raise ValueError(f"mini_batch_num_tokens: expected a positive int or None, got {mini_batch_num_tokens!r}")
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar

    def forward(self, sentence_features: Iterable[dict], labels: torch.Tensor | None = None) -> torch.Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) < 2:
            raise ValueError(f"expected at least (anchor, positive) columns, got {len(sentence_features)} column(s)")
        return _gradcache().forward_cached(self, sentence_features, labels)

    # The GradCache hook calls these on the loss object; they are sentence-transformers' own.
    def embed_minibatch(self, *args, **kwargs):
        return _gradcache().embed_minibatch(self, *args, **kwargs)

    def embed_minibatch_iter(self, *args, **kwargs):
        return _gradcache().embed_minibatch_iter(self, *args, **kwargs)

    def calculate_loss(self, reps: list[list[torch.Tensor]], labels: torch.Tensor | None = None, *,
                       with_backward: bool = False) -> torch.Tensor:
        """Step (2): the fused loss over the whole batch from the per-mini-batch embeddings;
        with ``with_backward`` the gradients land in the embeddings' ``.grad`` and the detached
        loss is returned."""
        loss = self.compute_loss_from_embeddings([torch.cat(column) for column in reps], labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict:
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size,
                "mini_batch_num_tokens": self.mini_batch_num_tokens}
