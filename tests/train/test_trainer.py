"""Trainer on a tiny random BERT: exact resume, gradient caching, backends, config, errors."""
from __future__ import annotations

import json
import pytest
import torch

from oracle_utils import tiny_parallel_data
from hybrid_fast.train import TrainConfig, Trainer
from hybrid_fast.train.config import load_config_file

transformers = pytest.importorskip("transformers")


def tiny_data(n=24, langs=("en", "de", "es")):
    return tiny_parallel_data(n, langs)


def config(tmp_path, **kw):
    base = dict(batch_size=6, max_steps=6, warmup_steps=2, lr=1e-3, val_every=3, val_batches=2, save_every=0,
                log_every=1, seed=3, output_dir=str(tmp_path), progress=False, languages=["en", "de", "es"])
    base.update(kw)
    return TrainConfig(**base)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_killed_run_resumes_to_the_same_steps(tiny_model, tmp_path):
    data, val = tiny_data(), tiny_data(12)
    full = Trainer(config(tmp_path / "full"), model=tiny_model(), train_data=data, val_data=val)
    ref = full.train(save_model=False)
    cfg = config(tmp_path / "killed", save_every=3)
    first = Trainer(cfg, model=tiny_model(), train_data=data, val_data=val)
    head = first.train(stop_at=3, save_model=False)
    torch.manual_seed(12345)  # a new process: different global RNG until the checkpoint restores it
    second = Trainer(cfg, model=tiny_model(seed=99), train_data=data, val_data=val)
    tail = second.train(resume=True, save_model=False)
    assert list(head["losses"]) == [1, 2, 3] and list(tail["losses"]) == [4, 5, 6]
    assert {**head["losses"], **tail["losses"]} == ref["losses"]
    a, b = params(full.model), params(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert tail["best_val_loss"] == ref["best_val_loss"]
    steps = [r["step"] for r in map(json.loads, (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines())
             if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "killed" / "loss.png").stat().st_size > 0


def test_gradient_cache_matches_plain_backward(tiny_model, tmp_path):
    data = tiny_data()
    runs = []
    for chunk in (0, 4):
        t = Trainer(config(tmp_path / str(chunk), grad_cache_chunk=chunk, max_steps=2, val_every=0),
                    model=tiny_model(dropout=0.0), train_data=data)
        runs.append((t.train(save_model=False), params(t.model)))
    (plain, p0), (cached, p1) = runs
    for step in plain["losses"]:
        assert plain["losses"][step] == pytest.approx(cached["losses"][step], rel=1e-5)
    for k in p0:
        torch.testing.assert_close(p0[k], p1[k], rtol=1e-4, atol=1e-6)


def test_gradient_cache_with_dropout_is_deterministic_and_bf16_runs(tiny_model, tmp_path):
    data = tiny_data()
    losses = [Trainer(config(tmp_path / str(i), grad_cache_chunk=4, max_steps=2, val_every=0, bf16=True),
                      model=tiny_model(), train_data=data).train(save_model=False)["losses"]
              for i in range(2)]
    assert losses[0] == losses[1]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA dropout draws from the device generator: needs a GPU"))])
@pytest.mark.parametrize("bf16", [False, True])
def test_gradient_cache_replay_reproduces_the_first_pass_dropout(tiny_model, tmp_path, bf16, device):
    """The grad-enabled replay of each chunk must draw the dropout masks of its no-grad first pass
    (else the cached loss gradient belongs to other embeddings): equal embeddings, bit for bit."""
    t = Trainer(config(tmp_path, grad_cache_chunk=4, max_steps=2, val_every=0, bf16=bf16),
                model=tiny_model(dropout=0.1).to(device), train_data=tiny_data())
    embed, calls = t._embed, []

    def spy(features):
        out = embed(features)
        calls.append((torch.is_grad_enabled(), out.detach().clone()))
        return out

    t._embed = spy  # the instance attribute shadows the method
    t.train(save_model=False)
    # Per step, batch 6 in chunks of 4: 2 query + 2 passage chunks, first pass then replay.
    assert [grad for grad, _ in calls] == ([False] * 4 + [True] * 4) * 2
    for step in range(2):
        first, replay = calls[8 * step:8 * step + 4], calls[8 * step + 4:8 * step + 8]
        for (_, a), (_, b) in zip(first, replay):
            assert torch.equal(a, b)
    # Not vacuous: without the RNG replay the same chunk embeds differently.
    t.model.train()
    features = t.model.tokenize(["en question number 1 about topic 1"] * 4, "query")
    with torch.no_grad():
        assert not torch.equal(embed(features), embed(features))


def test_fused_and_reference_loss_train_alike_and_simcse_runs(tiny_model, tmp_path):
    data = tiny_data()
    out = {}
    for backend in ("auto", "reference"):
        t = Trainer(config(tmp_path / backend, loss_backend=backend, max_steps=2, val_every=0, sampler="x-y"),
                    model=tiny_model(dropout=0.0), train_data=data)
        out[backend] = t.train(save_model=False)["losses"]
    assert out["auto"] == pytest.approx(out["reference"], rel=1e-4)
    t = Trainer(config(tmp_path / "simcse", sampler="simcse", max_steps=2, val_every=0, gradient_checkpointing=True),
                model=tiny_model(), train_data=data)
    summary = t.train()
    assert summary["steps"] == 2 and (tmp_path / "simcse" / "model" / "biencoder_config.json").is_file()


def test_early_stopping_stops_and_restores_best(tiny_model, tmp_path):
    data = tiny_data()
    t = Trainer(config(tmp_path, lr=0.5, max_steps=40, val_every=1, patience=2, warmup_steps=0),
                model=tiny_model(), train_data=data, val_data=tiny_data(12))
    summary = t.train(save_model=False)
    assert summary["stopped_early"] and summary["steps"] < 40
    assert t.validation_loss() == pytest.approx(summary["best_val_loss"], rel=1e-5)


def test_config_file_flags_and_errors(tmp_path):
    from hybrid_fast.train.cli import build_parser
    from hybrid_fast.train.config import config_from_args

    path = tmp_path / "c.yaml"
    path.write_text("sampler: x-y\nbatch_size: 8\nlanguages: [en, de]\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--batch-size", "4", "--bf16"])
    cfg = config_from_args(args)
    assert (cfg.sampler, cfg.batch_size, cfg.languages, cfg.bf16) == ("x-y", 4, ["en", "de"], True)
    (tmp_path / "bad.json").write_text(json.dumps({"batchsize": 3}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_config_file(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(alpha=2.0)
    with pytest.raises(ValueError, match="sampler"):
        TrainConfig(sampler="mono")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_saved_biencoder_is_evaluated_as_trained(tiny_model, tmp_path):
    """Encoder reads biencoder_config.json: a model trained with CLS pooling and no normalisation
    embeds exactly as the BiEncoder does (unless the caller overrides the choice)."""
    from hybrid_fast.encoder import Encoder
    from hybrid_fast.model import BiEncoder

    model = tiny_model(dropout=0.0)
    model.pooling, model.normalize = "cls", False
    folder = model.save_pretrained(tmp_path / "model")
    enc = Encoder(str(folder), query_prefix="", passage_prefix="", max_length=16, device="cpu")
    assert (enc.pooling, enc.normalize) == ("cls", False)
    texts = ["a question", "another longer question here"]
    model.eval()
    with torch.no_grad():
        expected = model(model.tokenize(texts, "query"))
    torch.testing.assert_close(enc.encode(texts, kind="query").float(), expected.float(), rtol=1e-4, atol=1e-5)
    assert Encoder(str(folder), pooling="mean", device="cpu").pooling == "mean"
    assert BiEncoder.from_pretrained(str(folder)).pooling == "cls"
