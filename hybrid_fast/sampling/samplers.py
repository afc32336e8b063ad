"""Batch samplers for parallel (multilingual) retrieval data: the hybrid method and its baselines.

Every sampler draws batches of :class:`PairKey` items ``(group, q_lang, p_lang, field)`` over a
parallel dataset of ``num_groups`` examples that exist in every one of ``languages``
(docs/method.md section 2):

=================  ====================================================================
``hybrid``         per batch, with probability ``alpha`` a mono batch, else a cross batch
``x-x-mono``       every batch monolingual: one language L for the whole batch (uniform)
``x-y``            every example cross-lingual: q_lang != p_lang, both uniform
``en-en``          every batch English only
``x-x``            each example in its own random language, query and passage the same
``simcse``         unsupervised: one text (question or passage, fair coin) used twice
=================  ====================================================================

Determinism and data parallelism (the contract the distributed trainer relies on):

* An epoch is a permutation of the groups drawn from ``numpy.random.default_rng([seed, epoch])``,
  cut into *global* batches of ``batch_size * world_size`` groups, so an example appears at most
  once per global batch (and per rank-local batch).
* The batch type, the mono language and every example's languages at step ``s`` come from
  ``default_rng([seed, epoch, s])``: a pure function of ``(seed, epoch, step)``. All ranks draw
  the same global plan and rank ``r`` keeps items ``[r * batch_size, (r + 1) * batch_size)``;
  so every rank has the same batch type and mono language at the same step.
* ``len()`` is the same on every rank (a global ``drop_last``): with ``drop_last=False`` the last,
  incomplete global batch keeps a multiple of ``world_size`` items (at most ``world_size - 1``
  examples of the epoch are left out) so every rank has the same number of examples.
* ``state_dict()`` holds ``(seed, epoch, step)`` and the global batch size; after
  ``load_state_dict`` the next ``iter()`` resumes at that step of that epoch and yields exactly the
  batches an uninterrupted run would. The plan depends on the global batch size, not on the world
  size: a run resumed with another ``world_size`` and the same global batch size draws the same
  global batches (each rank now keeps a slice of another width). A different global batch size
  cuts the epoch differently (examples would be skipped or repeated), so loading such a state
  raises ``ValueError``.
  Iterating to the end of an epoch resets ``step`` to 0 (call ``set_epoch`` for the next epoch,
  as with ``DistributedSampler``).

The samplers yield lists of :class:`PairKey`; a map-style dataset indexed by those keys
(:class:`hybrid_fast.sampling.ParallelQADataset`) makes them usable as a PyTorch ``DataLoader``
``batch_sampler``; :class:`IndexBatchSampler` maps keys to integer rows for the
sentence-transformers trainer.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np

FIELDS = ("pair", "query", "passage")


class PairKey(NamedTuple):
    """One batch item: example ``group`` with its query in ``q_lang`` and its passage in ``p_lang``.

    ``field`` is ``"pair"`` for supervised (query, passage) pairs; SimCSE items use ``"query"`` or
    ``"passage"``: that one text (in ``q_lang`` == ``p_lang``) is both the anchor and the positive.
    """

    group: int
    q_lang: str
    p_lang: str
    field: str = "pair"


class ParallelBatchSampler:
    """Base class: epoch permutation, sharding, state; subclasses choose the languages per step.

    Args:
        num_groups: number of parallel examples (indices ``0 .. num_groups - 1``).
        languages: training languages (distinct codes).
        batch_size: examples per batch *per rank*.
        seed: base seed; epoch ``e`` uses ``seed + e`` through ``default_rng([seed, e])``.
        drop_last: drop the last incomplete global batch of an epoch (default True: every batch
            has ``batch_size`` examples, as in-batch negatives want).
        rank, world_size: data-parallel position; each rank gets its slice of the global batch.

    Raises:
        ValueError: naming the argument, for a non-positive ``batch_size``/``num_groups``, a global
            batch larger than ``num_groups``, empty/repeated ``languages``, a bad rank/world size.
    """

    name = "base"
    min_languages = 1

    def __init__(self, num_groups: int, languages: Sequence[str], batch_size: int, *, seed: int = 0,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1):
        languages = tuple(languages)
        if not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"num_groups: expected a positive int, got {num_groups!r}")
        if not languages:
            raise ValueError("languages: expected at least one language, got none")
        if len(set(languages)) != len(languages):
            raise ValueError(f"languages: expected distinct codes, got {list(languages)}")
        if len(languages) < self.min_languages:
            raise ValueError(f"languages: the {self.name!r} sampler needs at least {self.min_languages} "
                             f"languages, got {list(languages)}")
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size: expected a positive int, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank: expected an int in [0, {world_size}), got {rank!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if batch_size * world_size > num_groups:
            raise ValueError(f"batch_size: batch_size * world_size = {batch_size * world_size} exceeds the "
                             f"number of groups ({num_groups})")
        self.num_groups, self.languages, self.batch_size = num_groups, languages, batch_size
        self.seed, self.drop_last, self.rank, self.world_size = int(seed), drop_last, rank, world_size
        self.epoch = 0
        self.step = 0
        self._permutation_cache: tuple[int, np.ndarray] | None = None  # (epoch, permutation)

    # ------------------------------------------------------------------ plan (pure functions)
    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Batches per epoch (on every rank)."""
        full, rest = divmod(self.num_groups, self.global_batch_size)
        return full if self.drop_last or rest < self.world_size else full + 1

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the groups in ``epoch`` (drawn once per epoch, not once per batch)."""
        cached = self._permutation_cache
        if cached is None or cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_groups))
            self._permutation_cache = cached
        return cached[1]

    def batch_type(self, epoch: int, step: int) -> tuple[str, str | None]:
        """``("mono", lang)``, ``("cross", None)`` or ``("mixed", None)`` of global batch ``step``:
        a pure function of ``(seed, epoch, step)``, identical on every rank."""
        return self._plan_languages(np.random.default_rng([self.seed, epoch, step]), 0)[0]

    def _plan_languages(self, rng: np.random.Generator, n: int) -> tuple[tuple[str, str | None], list[tuple[str, str, str]]]:
        """Draw the batch type and ``n`` ``(q_lang, p_lang, field)`` triples from ``rng``."""
        raise NotImplementedError

    def global_batch(self, epoch: int, step: int) -> list[PairKey]:
        """All ranks' items of batch ``step`` of ``epoch`` (rank r's slice is its batch)."""
        if not 0 <= step < len(self):
            raise ValueError(f"step: expected 0 <= step < {len(self)}, got {step}")
        groups = self.permutation(epoch)[step * self.global_batch_size:(step + 1) * self.global_batch_size]
        _, langs = self._plan_languages(np.random.default_rng([self.seed, epoch, step]), len(groups))
        # A drop_last=False tail is cut to equal rank slices after the plan is drawn, so it stays a
        # prefix of the one-process tail.
        keep = len(groups) - len(groups) % self.world_size
        return [PairKey(int(g), q, p, f) for g, (q, p, f) in zip(groups[:keep], langs)]

    def batch(self, epoch: int, step: int) -> list[PairKey]:
        """This rank's items of batch ``step`` of ``epoch``."""
        items = self.global_batch(epoch, step)
        per_rank = len(items) // self.world_size
        return items[self.rank * per_rank:(self.rank + 1) * per_rank]

    # ------------------------------------------------------------------ iteration and state
    def __iter__(self) -> Iterator[list[PairKey]]:
        while self.step < len(self):
            items = self.batch(self.epoch, self.step)
            self.step += 1
            yield items
        self.step = 0

    def next_batch(self) -> list[PairKey]:
        """This rank's next batch, moving to the next epoch when the current one is exhausted
        (an endless stream for step-based training; same batches as ``iter`` epoch by epoch)."""
        if self.step >= len(self):
            self.set_epoch(self.epoch + 1)
        items = self.batch(self.epoch, self.step)
        self.step += 1
        return items

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (the permutation is reseeded with seed + epoch)."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected a non-negative int, got {epoch!r}")
        self.epoch, self.step = epoch, 0

    def state_dict(self) -> dict:
        """``{"name", "seed", "epoch", "step", "global_batch_size"}``: ``step`` = batches already
        yielded this epoch."""
        return {"name": self.name, "seed": self.seed, "epoch": self.epoch, "step": self.step,
                "global_batch_size": self.global_batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``'s epoch and step.

        Raises:
            ValueError: the state belongs to another sampler type or seed, or to another global
                batch size (``batch_size * world_size``; the world size alone may differ).
        """
        if state.get("name") != self.name:
            raise ValueError(f"state: saved by sampler {state.get('name')!r}, loading into {self.name!r}")
        if int(state["seed"]) != self.seed:
            raise ValueError(f"state: saved with seed {state['seed']}, this sampler has seed {self.seed}")
        saved = state.get("global_batch_size", self.global_batch_size)  # absent in states of older versions
        if int(saved) != self.global_batch_size:
            raise ValueError(f"state: saved with global batch size {saved}, this sampler has "
                             f"{self.global_batch_size} (batch_size {self.batch_size} x world_size {self.world_size}); "
                             f"a different global batch cuts the epoch differently. Resume with a global batch of "
                             f"{saved}, or start a new run")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_groups={self.num_groups}, languages={list(self.languages)}, "
                f"batch_size={self.batch_size}, seed={self.seed}, rank={self.rank}, world_size={self.world_size})")


def _cross_pairs(rng: np.random.Generator, languages: tuple[str, ...], n: int) -> list[tuple[str, str, str]]:
    """``n`` (q, p) language pairs, q uniform, p uniform over the other languages."""
    k = len(languages)
    q = rng.integers(0, k, size=n)
    p = (q + rng.integers(1, k, size=n)) % k  # uniform over the k - 1 languages != q
    return [(languages[a], languages[b], "pair") for a, b in zip(q, p)]


class HybridBatchSampler(ParallelBatchSampler):
    """The hybrid method: each batch is monolingual with probability ``alpha``, else cross-lingual.

    A mono batch has one language, drawn uniformly over ``languages``, for every query and
    passage. A cross batch gives every example its own (q_lang, p_lang) with q_lang uniform and
    p_lang uniform over the others (hard negatives, if any, follow p_lang). ``alpha = 1`` is
    X-X-mono, ``alpha = 0`` is X-Y. Other arguments: :class:`ParallelBatchSampler`.

    Raises:
        ValueError: ``alpha`` outside [0, 1]; fewer than 2 languages with ``alpha < 1``.
    """

    name = "hybrid"

    def __init__(self, num_groups: int, languages: Sequence[str], batch_size: int, *, alpha: float = 0.5, **kwargs):
        if not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        if self.alpha < 1.0:
            self.min_languages = 2
        super().__init__(num_groups, languages, batch_size, **kwargs)

    def _plan_languages(self, rng, n):
        mono = rng.random() < self.alpha  # always drawn first: the type depends on the step alone
        lang = self.languages[int(rng.integers(0, len(self.languages)))]
        if mono:
            return ("mono", lang), [(lang, lang, "pair")] * n
        return ("cross", None), _cross_pairs(rng, self.languages, n)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "alpha": self.alpha}


class MonoBatchSampler(HybridBatchSampler):
    """X-X-mono: every batch in one language drawn uniformly per batch (``alpha = 1``)."""

    name = "x-x-mono"

    def __init__(self, num_groups, languages, batch_size, **kwargs):
        super().__init__(num_groups, languages, batch_size, alpha=1.0, **kwargs)


class CrossBatchSampler(HybridBatchSampler):
    """X-Y: every example cross-lingual, q_lang != p_lang (``alpha = 0``)."""

    name = "x-y"

    def __init__(self, num_groups, languages, batch_size, **kwargs):
        super().__init__(num_groups, languages, batch_size, alpha=0.0, **kwargs)


class EnglishBatchSampler(MonoBatchSampler):
    """En-En: every batch in English only (``languages`` must contain ``"en"``).

    Raises:
        ValueError: ``"en"`` not in ``languages``.
    """

    name = "en-en"

    def __init__(self, num_groups, languages, batch_size, **kwargs):
        if "en" not in tuple(languages):
            raise ValueError(f"languages: the 'en-en' sampler needs 'en', got {list(languages)}")
        super().__init__(num_groups, ("en",), batch_size, **kwargs)


class MixedMonoBatchSampler(ParallelBatchSampler):
    """X-X: each example in its own uniformly drawn language, query and passage the same."""

    name = "x-x"

    def _plan_languages(self, rng, n):
        langs = rng.integers(0, len(self.languages), size=n)
        return ("mixed", None), [(self.languages[a], self.languages[a], "pair") for a in langs]


class SimCSEBatchSampler(ParallelBatchSampler):
    """Unsupervised SimCSE: each example is one text, in a uniformly drawn language, encoded twice
    (dropout makes the two views); the text is the question or the passage (fair coin)."""

    name = "simcse"

    def _plan_languages(self, rng, n):
        langs = rng.integers(0, len(self.languages), size=n)
        fields = rng.integers(0, 2, size=n)
        return ("mixed", None), [(self.languages[a], self.languages[a], ("query", "passage")[f])
                                 for a, f in zip(langs, fields)]


SAMPLERS = {cls.name: cls for cls in (HybridBatchSampler, MonoBatchSampler, CrossBatchSampler,
                                      EnglishBatchSampler, MixedMonoBatchSampler, SimCSEBatchSampler)}


def make_sampler(name: str, num_groups: int, languages: Sequence[str], batch_size: int, *,
                 alpha: float = 0.5, **kwargs) -> ParallelBatchSampler:
    """Build a sampler by name (``SAMPLERS``); ``alpha`` is used by ``"hybrid"`` only.

    Raises:
        ValueError: unknown ``name`` (the choices are listed), or as the sampler's constructor.
    """
    if name not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {sorted(SAMPLERS)}, got {name!r}")
    if name == "hybrid":
        kwargs["alpha"] = alpha
    return SAMPLERS[name](num_groups, languages, batch_size, **kwargs)


class IndexBatchSampler:
    """Integer-row view of a sampler, for trainers that index a flat table (sentence-transformers).

    Row of key ``(g, q, p, f)`` = ``((g * L + index(q)) * L + index(p)) * 3 + index(f)`` with L =
    ``len(sampler.languages)`` and f in ``FIELDS``; :meth:`ParallelQADataset.to_hf_dataset`
    builds the table in that order. ``set_epoch``, ``state_dict`` and ``len`` delegate.
    """

    def __init__(self, sampler: ParallelBatchSampler, languages: Sequence[str] | None = None):
        self.sampler = sampler
        self.languages = tuple(languages or sampler.languages)
        self._lang = {lang: i for i, lang in enumerate(self.languages)}

    def row(self, key: PairKey) -> int:
        L = len(self.languages)
        return ((key.group * L + self._lang[key.q_lang]) * L + self._lang[key.p_lang]) * len(FIELDS) + FIELDS.index(key.field)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            yield [self.row(k) for k in batch]

    def __len__(self) -> int:
        return len(self.sampler)

    def next_batch(self) -> list[int]:
        """The wrapped sampler's next batch (endless stream), as table rows."""
        return [self.row(k) for k in self.sampler.next_batch()]

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
