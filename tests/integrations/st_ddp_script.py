"""Run under ``torchrun --nproc_per_node=2`` by test_st_ddp.py: SentenceTransformerTrainer on CPU
(gloo DDP) with hybrid batches and the fused loss with cross-rank negatives; each rank writes
the anchor token ids and group labels its loss saw per step to ``<out>/rank<r>.json``."""
from __future__ import annotations

import json
import os
import sys

import hybrid_fast as hf
from hybrid_fast.data.squad import ParallelQA
from hybrid_fast.integrations.sentence_transformers import parallel_batch_sampler, parallel_st_dataset
from hybrid_fast.model import offline_minilm_path
from hybrid_fast.sampling import ParallelQADataset

LANGS = ("en", "de", "es")
BATCH, STEPS, SEED = 3, 3, 5


def parallel_data(n=24):
    records = {lang: [ParallelQA(f"q{i}", f"a{i // 6}", lang, f"{lang} question {i} about topic {i % 5}",
                                 f"{lang} passage {i // 2} says something about {i % 7}", 0, "x", i // 2)
                      for i in range(n)] for lang in LANGS}
    return ParallelQADataset(records, LANGS)


def main(out: str) -> None:
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    data = parallel_data()
    model = SentenceTransformer(str(offline_minilm_path()), device="cpu")
    loss = hf.MultipleNegativesRankingLoss(model, gather_across_devices=True)
    seen = []
    loss.register_forward_pre_hook(lambda module, args: seen.append(
        {"input_ids": args[0][0]["input_ids"].tolist(), "labels": args[1].tolist()}))
    args = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(out, "run"), per_device_train_batch_size=BATCH, max_steps=STEPS, seed=SEED,
        use_cpu=True, ddp_backend="gloo", save_strategy="no", report_to="none", disable_tqdm=True,
        batch_sampler=parallel_batch_sampler(data, "hybrid", alpha=0.5))
    SentenceTransformerTrainer(model=model, args=args, train_dataset=parallel_st_dataset(data), loss=loss).train()
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main(sys.argv[1])
