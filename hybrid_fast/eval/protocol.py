"""What the evaluators need of a model: :class:`TextEncoder`, an object with ``encode``.

:func:`hybrid_fast.eval.xquad_r.evaluate_lareqa`, :func:`hybrid_fast.eval.beir.evaluate_beir` and
the ``hybrid-fast eval`` commands take any such object: :class:`hybrid_fast.Encoder`, a trained
:class:`hybrid_fast.model.BiEncoder`, or a wrapper around another library's model. Typing only:
this module imports no model code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class TextEncoder(Protocol):
    """``encode(texts, kind)`` -> float32 ``[len(texts), d]`` (CPU tensor), row i embedding
    ``texts[i]``; ``kind`` is ``"query"`` or ``"passage"`` (the encoder adds its own prefixes).
    Scores are inner products of these rows, so normalise inside ``encode`` for cosine.

    ``contexts`` (one second segment per text, e.g. a candidate sentence's paragraph) is passed
    only by ``evaluate_lareqa(..., candidate_context="paragraph")``; an encoder without that
    keyword serves every other evaluation. Optional: ``identity() -> dict`` (the settings the
    embeddings depend on), recorded by the CLI in its JSON output when present.
    """

    def encode(self, texts: Sequence[str], kind: str = "passage", *,
               contexts: Sequence[str] | None = None) -> "torch.Tensor": ...
