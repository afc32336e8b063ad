"""Samplers: batch-type shares, language uniformity, X-Y pairs, no duplicates, resume, ranks."""
from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest
import torch

from hybrid_fast.sampling import (
    SAMPLERS, HybridBatchSampler, IndexBatchSampler, PairCollator, PairKey, ParallelQADataset,
    make_sampler, split_articles,
)

LANGS = ("ar", "de", "en", "es", "zh")


def stream(sampler, epochs=1):
    out = []
    for e in range(epochs):
        sampler.set_epoch(e)
        out.extend(list(sampler))
    return out


def test_mono_share_converges_to_alpha():
    for alpha in (0.0, 0.3, 0.5, 1.0):
        s = HybridBatchSampler(1000, LANGS, 10, alpha=alpha, seed=1)
        types = [s.batch_type(e, t)[0] for e in range(40) for t in range(len(s))]
        share = types.count("mono") / len(types)
        assert abs(share - alpha) < 4 * np.sqrt(alpha * (1 - alpha) / len(types)) + 1e-12, (alpha, share)


def test_batches_are_one_type_and_languages_uniform():
    s = HybridBatchSampler(500, LANGS, 10, alpha=0.5, seed=3)
    mono_lang, q_lang, p_lang = collections.Counter(), collections.Counter(), collections.Counter()
    for batch in stream(s, epochs=30):
        pairs = {(k.q_lang, k.p_lang) for k in batch}
        if all(q == p for q, p in pairs):
            assert len(pairs) == 1  # a mono batch has a single language
            mono_lang[batch[0].q_lang] += 1
        else:
            assert all(q != p for q, p in pairs)  # a cross batch has no same-language example
            for k in batch:
                q_lang[k.q_lang] += 1
                p_lang[k.p_lang] += 1
    for counter in (mono_lang, q_lang, p_lang):
        n = sum(counter.values())
        expected = n / len(LANGS)
        chi2 = sum((counter[lang] - expected) ** 2 / expected for lang in LANGS)
        assert chi2 < 18.5, counter  # chi2, 4 dof, p = 0.001


def test_x_y_never_pairs_equal_languages_and_covers_all_pairs():
    s = make_sampler("x-y", 300, LANGS, 30, seed=0)
    pairs = collections.Counter((k.q_lang, k.p_lang) for b in stream(s, epochs=20) for k in b)
    assert all(q != p for q, p in pairs)
    assert len(pairs) == len(LANGS) * (len(LANGS) - 1)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_no_duplicate_groups_and_epoch_covers_groups(name):
    s = make_sampler(name, 103, LANGS, 8, seed=5)
    batches = stream(s)
    assert len(batches) == len(s) == 103 // 8
    seen = [k.group for b in batches for k in b]
    assert all(len({k.group for k in b}) == len(b) == 8 for b in batches)
    assert len(set(seen)) == len(seen)
    if name == "en-en":
        assert {(k.q_lang, k.p_lang) for b in batches for k in b} == {("en", "en")}
    if name == "x-x":
        assert all(k.q_lang == k.p_lang and k.field == "pair" for b in batches for k in b)
    if name == "simcse":
        assert {k.field for b in batches for k in b} == {"query", "passage"}


def test_deterministic_for_seed_and_epoch():
    a, b = make_sampler("hybrid", 200, LANGS, 16, seed=7), make_sampler("hybrid", 200, LANGS, 16, seed=7)
    assert stream(a, 3) == stream(b, 3)
    c = make_sampler("hybrid", 200, LANGS, 16, seed=8)
    assert stream(c, 1) != stream(a, 1)
    a.set_epoch(0)
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0


@pytest.mark.parametrize("name", ["hybrid", "x-y", "simcse"])
def test_resume_mid_epoch_gives_identical_stream(name):
    full = make_sampler(name, 200, LANGS, 16, seed=11)
    full.set_epoch(2)
    expected = list(full)
    first = make_sampler(name, 200, LANGS, 16, seed=11)
    first.set_epoch(2)
    it = iter(first)
    head = [next(it) for _ in range(5)]
    state = first.state_dict()
    resumed = make_sampler(name, 200, LANGS, 16, seed=11)
    resumed.load_state_dict(state)
    assert head + list(resumed) == expected
    assert resumed.state_dict()["step"] == 0


def test_ranks_share_type_and_language_and_partition_the_global_batch():
    world = 4
    ranks = [HybridBatchSampler(400, LANGS, 8, alpha=0.5, seed=2, rank=r, world_size=world) for r in range(world)]
    streams = [stream(s, 2) for s in ranks]
    for step in range(len(streams[0])):
        batches = [st[step] for st in streams]
        kinds = {"mono" if all(k.q_lang == k.p_lang for k in b) else "cross" for b in batches}
        assert len(kinds) == 1
        if kinds == {"mono"}:
            assert len({k.q_lang for b in batches for k in b}) == 1
        groups = [k.group for b in batches for k in b]
        assert len(set(groups)) == len(groups) == 8 * world
    assert ranks[0].global_batch(1, 3) == ranks[3].global_batch(1, 3)
    assert [s.batch_type(1, 3) for s in ranks] == [ranks[0].batch_type(1, 3)] * world
    # One rank with the global batch size draws the same global batches.
    single = HybridBatchSampler(400, LANGS, 8 * world, alpha=0.5, seed=2)
    assert single.global_batch(1, 3) == ranks[0].global_batch(1, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=1.5), "alpha"), (dict(alpha=-0.1), "alpha"), (dict(batch_size=500), "batch_size"),
    (dict(languages=()), "languages"), (dict(languages=("en", "en")), "languages"),
    (dict(languages=("en",)), "languages"), (dict(rank=2, world_size=2), "rank"),
    (dict(world_size=0), "world_size"), (dict(batch_size=0), "batch_size"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    args = dict(num_groups=100, languages=LANGS, batch_size=10, alpha=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        HybridBatchSampler(args.pop("num_groups"), args.pop("languages"), args.pop("batch_size"), **args)


def test_unknown_sampler_and_state_mismatch():
    with pytest.raises(ValueError, match="sampler: expected one of"):
        make_sampler("nope", 10, LANGS, 2)
    with pytest.raises(ValueError, match="en-en"):
        make_sampler("en-en", 10, ("de", "es"), 2)
    s = make_sampler("x-y", 10, LANGS, 2, seed=1)
    with pytest.raises(ValueError, match="state"):
        make_sampler("hybrid", 10, LANGS, 2, seed=1).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="seed"):
        make_sampler("x-y", 10, LANGS, 2, seed=2).load_state_dict(s.state_dict())


# ----------------------------------------------------------------------------- dataset, collator
def _records():
    from hybrid_fast.data.squad import ParallelQA

    recs = {}
    for lang in ("en", "de"):
        recs[lang] = [ParallelQA(f"q{i}", f"art{i // 4}", lang, f"{lang} question {i}", f"{lang} passage {i // 2}",
                                 0, "x", i // 2) for i in range(12)]
    recs["de"] = recs["de"][:-1]  # q11 missing in de
    return recs


def test_dataset_collator_and_dataloader():
    ds = ParallelQADataset(_records(), ("en", "de"))
    assert ds.num_groups == 11 and ds.articles == ["art0", "art1", "art2"]
    s = make_sampler("x-y", ds.num_groups, ds.languages, 4, seed=0)
    collate = PairCollator("Q: ", "P: ")
    loader = torch.utils.data.DataLoader(ds, batch_sampler=s, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert all(q.startswith("Q: ") for q in b.queries) and all(p.startswith("P: ") for p in b.passages)
    keys = s.batch(0, 0)
    assert b.queries[0] == "Q: " + ds[keys[0]]["query"] and keys[0].q_lang in b.queries[0]
    assert torch.equal(b.q_groups, torch.tensor([ds[k]["mask_group"] for k in keys]))
    ex = ds[PairKey(3, "de", "de", "passage")]
    assert ex["query"] == ex["passage"] == "de passage 1" and ex["mask_group"] == 1
    only = ParallelQADataset(_records(), ("en",), articles=["art2"])
    assert only.group_ids == ["q8", "q9", "q10", "q11"]
    with pytest.raises(ValueError, match="languages"):
        ParallelQADataset(_records(), ("en", "fr"))
    with pytest.raises(ValueError, match="articles"):
        ParallelQADataset(_records(), ("en",), articles=["none"])
    with pytest.raises(ValueError, match="twice"):
        collate([ds[PairKey(0, "en", "en")], ds[PairKey(0, "de", "de")]])


def test_index_batch_sampler_rows_match_hf_table():
    ds = ParallelQADataset(_records(), ("en", "de"), articles=["art0", "art1"])
    table = ds.to_hf_dataset()
    idx = IndexBatchSampler(make_sampler("hybrid", ds.num_groups, ds.languages, 4, seed=0))
    keys = idx.sampler.batch(0, 0)
    rows = next(iter(idx))
    assert len(table) == ds.num_groups * 4 * 3
    assert [table[r]["anchor"] for r in rows] == [ds[k]["query"] for k in keys]
    # The endless stream gives the same rows as a fresh sampler's stream.
    fresh = make_sampler("hybrid", ds.num_groups, ds.languages, 4, seed=0)
    streamed = IndexBatchSampler(make_sampler("hybrid", ds.num_groups, ds.languages, 4, seed=0))
    for _ in range(2 * len(fresh) + 1):  # crosses epoch boundaries
        assert streamed.next_batch() == [streamed.row(k) for k in fresh.next_batch()]


def test_split_articles_is_disjoint_and_deterministic():
    titles = [f"t{i}" for i in range(48)]
    a = split_articles(titles, dev=6, test=10, seed=0)
    assert a == split_articles(titles, dev=6, test=10, seed=0)
    assert (len(a["train"]), len(a["dev"]), len(a["test"])) == (32, 6, 10)
    assert not set(a["train"]) & set(a["test"]) and not set(a["dev"]) & set(a["test"])
    with pytest.raises(ValueError, match="dev/test"):
        split_articles(titles, dev=20, test=30)


def test_next_batch_rolls_over_epochs_like_iter():
    a, b = make_sampler("hybrid", 50, LANGS, 16, seed=4), make_sampler("hybrid", 50, LANGS, 16, seed=4)
    assert [a.next_batch() for _ in range(7)] == stream(b, 3)[:7]
    assert a.state_dict()["epoch"] == 2 and a.state_dict()["step"] == 1
