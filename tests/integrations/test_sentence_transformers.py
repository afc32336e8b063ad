"""sentence-transformers integration: the batch-sampler adapter (alone, under accelerate's
sharding, inside the real SentenceTransformerTrainer), group masking through the label column,
the cached fused loss against sentence-transformers' class, gather_across_devices."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

st = pytest.importorskip("sentence_transformers")
pytest.importorskip("accelerate")
pytest.importorskip("datasets")

import hybrid_fast as hf  # noqa: E402
from hybrid_fast.data.squad import ParallelQA  # noqa: E402
from hybrid_fast.integrations.sentence_transformers import (  # noqa: E402
    ParallelSTBatchSampler, parallel_batch_sampler, parallel_st_dataset)
from hybrid_fast.sampling import PairCollator, ParallelQADataset, make_sampler  # noqa: E402

LANGS = ("en", "de", "es")


def parallel_data(n=24, langs=LANGS):
    """n questions over n // 2 paragraphs (two questions per paragraph: masking matters)."""
    records = {lang: [ParallelQA(f"q{i}", f"a{i // 6}", lang, f"{lang} question {i} about topic {i % 5}",
                                 f"{lang} passage {i // 2} says something about {i % 7}", 0, "x", i // 2)
                      for i in range(n)] for lang in langs}
    return ParallelQADataset(records, langs)


def no_dropout(module):
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return module


# ----------------------------------------------------------------------------- batch sampler
def test_adapter_yields_the_trainer_sampler_batches_as_rows():
    data = parallel_data()
    table = parallel_st_dataset(data)
    assert table.column_names == ["anchor", "positive", "label"]
    adapter = parallel_batch_sampler(data, "hybrid", alpha=0.5)(table, 4, False, None, None, 7)
    reference = make_sampler("hybrid", data.num_groups, data.languages, 4, alpha=0.5, seed=7)
    collate = PairCollator()
    assert len(adapter) == len(reference) == 6
    for epoch in range(2):  # the trainer calls set_epoch; epoch 1 continues the next_batch stream
        adapter.set_epoch(epoch)
        for rows in adapter:
            batch = collate([data[k] for k in reference.next_batch()])
            assert [table[r]["anchor"] for r in rows] == batch.queries
            assert [table[r]["positive"] for r in rows] == batch.passages
            assert [table[r]["label"] for r in rows] == batch.q_groups.tolist()
    with pytest.raises(ValueError, match="rows"):
        ParallelSTBatchSampler(table.select(range(10)), 4, data=data)
    with pytest.raises(ValueError, match="sampler"):
        parallel_batch_sampler(data, "nope")


@pytest.mark.parametrize("sampler", ["hybrid", "x-x-mono", "x-y", "simcse"])
def test_accelerate_sharding_gives_every_rank_its_slice_of_one_global_batch(sampler):
    """accelerate's prepare_data_loader with 2 processes: rank r gets slice r of each global batch
    (same batch type and language on both ranks, disjoint groups), and set_epoch reaches the plan."""
    from accelerate.data_loader import prepare_data_loader

    data = parallel_data()
    table = parallel_st_dataset(data, groups=False)
    world = 2
    per_rank = []
    for rank in range(world):
        adapter = parallel_batch_sampler(data, sampler, alpha=0.5, world_size=world)(table, 3, False, None, None, 5)
        loader = torch.utils.data.DataLoader(range(len(table)), batch_sampler=adapter, collate_fn=list)
        sharded = prepare_data_loader(loader, num_processes=world, process_index=rank, even_batches=False,
                                      put_on_device=False)
        assert len(sharded) == 4  # 24 groups // (3 * 2)
        sharded.set_epoch(1)
        per_rank.append(list(sharded))
        assert adapter.epoch == 1
    plans = [make_sampler(sampler, data.num_groups, data.languages, 3, alpha=0.5, seed=5, world_size=world, rank=r)
             for r in range(world)]
    for step in range(4):
        for rank in range(world):
            keys = plans[rank].batch(1, step)
            assert per_rank[rank][step] == [adapter.rows.row(k) for k in keys]
        assert plans[0].batch_type(1, step) == plans[1].batch_type(1, step)
        groups = [{k.group for k in plans[r].batch(1, step)} for r in range(world)]
        assert not groups[0] & groups[1]
        if sampler in ("x-x-mono", "hybrid") and plans[0].batch_type(1, step)[0] == "mono":
            langs = {k.q_lang for r in range(world) for k in plans[r].batch(1, step)}
            assert len(langs) == 1


# ----------------------------------------------------------------------------- losses
def _features(model, texts_per_column):
    return [model.tokenize(texts) for texts in texts_per_column]


TEXTS = (["Query: who wrote hamlet", "Query: wer schrieb hamlet", "Query: capital of france",
          "Query: largest planet", "Query: boiling point of water"],
         ["Passage: Shakespeare wrote Hamlet.", "Passage: Shakespeare schrieb Hamlet.",
          "Passage: Paris is the capital of France.", "Passage: Jupiter is the largest planet.",
          "Passage: Water boils at 100 C."],
         ["Passage: Berlin is in Germany.", "Passage: Mars is red.", "Passage: Ice melts at 0 C.",
          "Passage: Goethe wrote Faust.", "Passage: Rome is old."])


def _loss_and_grads(model, loss_module, features, labels=None, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = loss_module(features, labels)
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b):
    (la, ga), (lb, gb) = a, b
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    assert ga.keys() == gb.keys() and len(ga) > 10
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-3, atol=1e-6, msg=name)


def test_label_column_masks_groups_as_infonce(minilm_path):
    model = no_dropout(st.SentenceTransformer(minilm_path, device="cpu"))
    features = _features(model, TEXTS)
    labels = torch.tensor([0, 0, 1, 2, 3])  # rows 0 and 1: one passage in two languages
    with torch.no_grad():
        reps = [model(dict(f))["sentence_embedding"] for f in features]
        ours = hf.MultipleNegativesRankingLoss(model)(features, labels)
        plain = hf.MultipleNegativesRankingLoss(model)(features, None)
    groups = torch.cat([labels, torch.full((5,), -1)])
    expected = hf.reference.infonce_loss(torch.nn.functional.normalize(reps[0], dim=-1),
                                         torch.nn.functional.normalize(torch.cat(reps[1:]), dim=-1),
                                         q_groups=labels, p_groups=groups)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert ours < plain  # the other-language positive is no longer a negative of rows 0 and 1
    with pytest.raises(ValueError, match="integer group ids"):
        hf.MultipleNegativesRankingLoss(model)(features, torch.rand(5))
    with pytest.raises(ValueError, match="non-negative"):
        hf.MultipleNegativesRankingLoss(model)(features, torch.tensor([0, -1, 1, 2, 3]))


@pytest.mark.parametrize("symmetric", [False, True])
def test_cached_loss_equals_sentence_transformers_cached_loss(minilm_path, symmetric):
    """Loss and every parameter gradient equal sentence-transformers' CachedMNRL on the real MiniLM,
    in train mode (dropout replayed by both through the same saved RNG states)."""
    model = st.SentenceTransformer(minilm_path, device="cpu")
    model.train()
    columns = TEXTS[:2] if symmetric else TEXTS
    features = _features(model, columns)
    kwargs = dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction") if symmetric else {}
    from sentence_transformers.sentence_transformer import losses
    theirs = losses.CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=2, **kwargs)
    ours = hf.CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=2, **kwargs)
    _assert_same(_loss_and_grads(model, ours, features), _loss_and_grads(model, theirs, features))


def test_cached_loss_with_groups_equals_the_uncached_loss(minilm_path):
    model = no_dropout(st.SentenceTransformer(minilm_path, device="cpu"))
    features = _features(model, TEXTS)
    labels = torch.tensor([0, 0, 1, 2, 3])
    cached = hf.CachedMultipleNegativesRankingLoss(model, mini_batch_size=3, mini_batch_num_tokens=None)
    _assert_same(_loss_and_grads(model, cached, features, labels),
                 _loss_and_grads(model, hf.MultipleNegativesRankingLoss(model), features, labels))
    assert cached.get_config_dict()["mini_batch_size"] == 3
    with pytest.raises(ValueError, match="mini_batch_size"):
        hf.CachedMultipleNegativesRankingLoss(model, mini_batch_size=0)


def test_unsupported_options_are_refused_clearly():
    with pytest.raises(NotImplementedError, match="query_to_query"):
        hf.MultipleNegativesRankingLoss(None, directions=("query_to_doc", "query_to_query"))
    with pytest.raises(NotImplementedError, match="per_direction"):
        hf.MultipleNegativesRankingLoss(None, directions=("query_to_doc", "doc_to_query"), partition_mode="joint")
    with pytest.raises(NotImplementedError, match="hardness"):
        hf.CachedMultipleNegativesRankingLoss(None, hardness_mode="in_batch_negatives", hardness_strength=5.0)
    with pytest.raises(ValueError, match="directions"):
        hf.MultipleNegativesRankingLoss(None, directions=("doc_to_query",))




# ----------------------------------------------------------------------------- the real trainer
def test_sentence_transformer_trainer_matches_hybrid_fast_trainer(minilm_path, tmp_path):
    """5 steps of SentenceTransformerTrainer (hybrid batches through the adapter, the fused loss
    with group masks) log the same per-step losses as hybrid_fast.train.Trainer with the same
    batches, seed, optimiser and schedule. Dropout is off in both: the two trainers draw other
    numbers from the global RNG between steps (data loader seeds), so their masks would differ."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from hybrid_fast.model import BiEncoder
    from hybrid_fast.train import TrainConfig, Trainer

    data = parallel_data()
    steps, batch, seed, lr = 5, 4, 3, 2e-4
    cfg = TrainConfig(model=minilm_path, sampler="hybrid", alpha=0.5, batch_size=batch, max_steps=steps, lr=lr,
                      weight_decay=0.01, warmup_steps=0, schedule="linear", max_grad_norm=1.0, seed=seed,
                      query_max_length=256, passage_max_length=256, val_every=0, save_every=0, log_every=1,
                      languages=list(LANGS), output_dir=str(tmp_path / "ours"), progress=False)
    ours = Trainer(cfg, model=no_dropout(BiEncoder.from_pretrained(minilm_path, query_max_length=256,
                                                                  passage_max_length=256)), train_data=data)
    expected = ours.train(save_model=False)["losses"]

    model = no_dropout(st.SentenceTransformer(minilm_path, device="cpu"))
    loss = hf.MultipleNegativesRankingLoss(model, scale=cfg.scale)
    logged = []
    loss.register_forward_hook(lambda module, args, out: logged.append(float(out.detach())))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "st"), per_device_train_batch_size=batch, max_steps=steps, learning_rate=lr,
        weight_decay=0.01, warmup_steps=0, lr_scheduler_type="linear", max_grad_norm=1.0, seed=seed,
        optim="adamw_torch", save_strategy="no", report_to="none", logging_steps=1, use_cpu=True,
        dataloader_drop_last=True, disable_tqdm=True,
        batch_sampler=parallel_batch_sampler(data, "hybrid", alpha=0.5))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=parallel_st_dataset(data), loss=loss)
    trainer.train()
    assert len(logged) == steps
    for step, value in enumerate(logged, start=1):
        assert abs(value - expected[step]) < 1e-5, (step, value, expected[step])
