"""Samplers under data parallelism: W = 2 spawned gloo ranks draw one global plan.

Per step every rank has the same batch type and language, the ranks' slices concatenate to the
one-process global batch, no example repeats across ranks (in a step or in an epoch), ``len()``
is equal on all ranks (global drop_last, also with ``drop_last=False`` and a ragged tail), and a
sampler state resumes under another world size with the same global batches.
"""
from __future__ import annotations

import pytest

from hybrid_fast.distributed.testing import run_workers
from hybrid_fast.sampling import SAMPLERS, make_sampler

LANGS = ("de", "en", "es", "vi")
NUM_GROUPS, PER_RANK, SEED = 37, 4, 11  # 37 = 4 global batches of 8 + a ragged tail of 5


def _epoch_of_every_sampler(rank, world):
    """Each sampler's epoch 1 on this rank (built from the process group), gathered on all ranks."""
    from hybrid_fast.distributed import init_distributed

    ctx = init_distributed("gloo", 60.0)
    mine = {}
    for name in sorted(SAMPLERS):
        for drop_last in (True, False):
            s = make_sampler(name, NUM_GROUPS, LANGS, PER_RANK, seed=SEED, drop_last=drop_last, rank=ctx.rank,
                             world_size=ctx.world_size)
            s.set_epoch(1)
            mine[name, drop_last] = (len(s), [(s.batch_type(1, t), [tuple(k) for k in b]) for t, b in enumerate(s)])
    return ctx.all_gather_object(mine)


@pytest.fixture(scope="module")
def gathered():
    per_rank = run_workers(_epoch_of_every_sampler, 2, init="env", timeout=90)
    assert per_rank[0] == per_rank[1]  # every rank gathered the same view
    return per_rank[0]


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_ranks_draw_one_global_plan(gathered, name, drop_last):
    (len0, steps0), (len1, steps1) = gathered[0][name, drop_last], gathered[1][name, drop_last]
    single = make_sampler(name, NUM_GROUPS, LANGS, 2 * PER_RANK, seed=SEED, drop_last=drop_last)
    single.set_epoch(1)
    expected = [[tuple(k) for k in b] for b in single]
    assert len0 == len1 == len(steps0) == len(steps1)
    assert len0 == (4 if drop_last else 5)  # the tail of 5 keeps 4 examples (2 per rank) when not dropped
    assert len(expected) == len0
    seen_in_epoch = []
    for (type0, keys0), (type1, keys1), global_keys in zip(steps0, steps1, expected):
        assert type0 == type1  # same batch type and mono language on every rank
        assert len(keys0) == len(keys1) > 0
        # Disjoint slices of the one-process global batch (the ragged tail cut to a multiple of W).
        assert keys0 + keys1 == global_keys[:len(global_keys) - len(global_keys) % 2]
        groups = [k[0] for k in keys0 + keys1]
        assert len(set(groups)) == len(groups)  # no example repeats across ranks
        seen_in_epoch += groups
        if type0[0] == "mono":
            assert {(k[1], k[2]) for k in keys0 + keys1} == {(type0[1], type0[1])}
    assert len(set(seen_in_epoch)) == len(seen_in_epoch)  # nor within the epoch


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_state_resumes_under_another_world_size_with_the_same_global_batches(name):
    two = [make_sampler(name, NUM_GROUPS, LANGS, PER_RANK, seed=SEED, rank=r, world_size=2) for r in range(2)]
    for s in two:
        s.next_batch(), s.next_batch()
    one = make_sampler(name, NUM_GROUPS, LANGS, 2 * PER_RANK, seed=SEED)
    one.load_state_dict(two[0].state_dict())
    for _ in range(5):  # across the epoch boundary
        assert one.next_batch() == two[0].next_batch() + two[1].next_batch()
    other = make_sampler(name, NUM_GROUPS, LANGS, PER_RANK, seed=SEED)  # global batch 4, not 8
    with pytest.raises(ValueError, match="global batch size 8"):
        other.load_state_dict(two[0].state_dict())
