"""The training loop: sampler -> collator -> bi-encoder -> fused InfoNCE -> AdamW.

:class:`Trainer` runs step-based training (``max_steps``) over an endless stream of batches from a
:mod:`hybrid_fast.sampling` sampler, with warm-up + decay, gradient clipping, bf16 autocast,
gradient checkpointing, gradient caching, validation loss with early stopping, a periodic
evaluation hook, checkpoints that resume exactly, a progress bar, a JSONL metrics log and a PNG
loss curve. It only trains: the datasets come from :mod:`hybrid_fast.data.xquad_split`
(``build_datasets``), the loss curve from :func:`hybrid_fast.eval.report.plot_metrics`.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.xquad_split import (  # noqa: F401  (load_xquad: public here too)
    build_datasets, load_xquad, resolve_training_data)
from ..distributed.runtime import DistContext, context_of_current_group
from ..eval.report import plot_metrics, read_metrics  # noqa: F401  (read_metrics: public here too)
from ..ops.infonce import infonce_loss
from ..sampling import PairBatch, PairCollator, ParallelQADataset, make_sampler
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .parallel import DataParallelPlan, MultiForward

log = logging.getLogger(__name__)

EvalHook = Callable[["object", int], dict]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    """Multiplier of ``config.lr`` at a step: linear warm-up over ``warmup_steps``, then
    linear/cosine decay to 0 at ``max_steps`` (or constant)."""
    warm, total, kind = config.warmup_steps, config.max_steps, config.schedule

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Trainer:
    """Train a :class:`hybrid_fast.model.BiEncoder` with hybrid (or baseline) batches.

    Args:
        config: :class:`TrainConfig`.
        model: a BiEncoder; default ``BiEncoder.from_pretrained(config.model, ...)`` built after
            seeding with ``config.seed``.
        train_data / val_data: :class:`ParallelQADataset` (read only, so one pair can be shared by
            many trainers); default :func:`build_datasets` (XQuAD under ``config.data_dir`` split
            by article; ``data_dir`` None: found by :func:`resolve_training_data`, and recorded).
            ``val_data=None`` with explicit ``train_data`` disables validation.
        split: the article split behind explicit ``train_data``, written to ``split.json`` (as
            when the trainer builds its datasets); ignored when it builds them.
        eval_hook: ``hook(model, step) -> dict`` called every ``config.eval_every`` steps (e.g.
            XQuAD-R mAP); its dict is logged. Under torchrun it runs on every rank (it may use
            collectives, e.g. a sharded search); rank 0's dict is logged.
        dist: the data-parallel context (:mod:`hybrid_fast.distributed`); default: the
            initialised process group (as after ``init_distributed`` under torchrun), else one
            process. With W > 1 ranks the model trains under DDP on disjoint slices of each global
            batch (:mod:`hybrid_fast.train.parallel`).

    Per step: the sampler's next batch -> :class:`PairCollator` (prefixes, paragraph mask groups)
    -> embeddings (``grad_cache_chunk`` > 0: chunks without grad, loss on the cached embeddings,
    then each chunk re-embedded with its saved RNG state and back-propagated) ->
    :func:`hybrid_fast.infonce_loss` with ``q_groups``/``p_groups`` -> clip -> AdamW -> scheduler.

    Determinism: given the config, the stream of batches, dropout masks and updates are fixed
    (CPU, fixed thread count); ``train(resume=True)`` after a kill reproduces the remaining steps
    of an uninterrupted run (checkpoints hold model, optimiser, scheduler, sampler, RNG states).

    Files in ``config.output_dir``: ``config.json``, ``metrics.jsonl`` (one JSON object per log
    line: ``{"step", "loss", "lr", "examples_per_s", ...}`` / ``{"step", "val_loss"}`` /
    ``{"step", "eval"}``), ``loss.png``, ``checkpoint-<step>/``, ``model/`` (final weights,
    loadable by :class:`hybrid_fast.Encoder` and ``SentenceTransformer(folder)``, prefixes included).
    """

    def __init__(self, config: TrainConfig, *, model=None, train_data: ParallelQADataset | None = None,
                 val_data: ParallelQADataset | None = None, split: dict[str, list[str]] | None = None,
                 eval_hook: EvalHook | None = None, dist: DistContext | None = None):
        if train_data is None and config.data_dir is None:  # no --data-dir: env, cache, else the packaged sample
            config = config.replace(data_dir=resolve_training_data(config))  # config.json records the folder
        self.config = config
        self.dist = context_of_current_group() if dist is None else dist
        self.parallel = DataParallelPlan(self.dist, config.batch_size, cross_rank_negatives=config.cross_rank_negatives)
        seed_everything(config.seed)
        if model is None:
            from ..model import BiEncoder

            # prefixes "": the collator prefixes the training texts (a folder's prompts must not add twice)
            model = BiEncoder.from_pretrained(
                config.model, pooling=config.pooling, normalize=config.similarity == "cos",
                query_max_length=config.query_max_length, passage_max_length=config.passage_max_length,
                query_prefix="", passage_prefix="", gradient_checkpointing=config.gradient_checkpointing)
        elif config.gradient_checkpointing:
            from ..model import enable_gradient_checkpointing

            enable_gradient_checkpointing(model.model)
        if self.dist.device.type == "cuda":
            model.to(self.dist.device)
        self.model = model
        self._local_forward = MultiForward(model)
        self.forward_module = self.parallel.wrap(self._local_forward)  # in DDP under several ranks
        if self.parallel.rank_seed(config.seed) is not None:
            seed_everything(self.parallel.rank_seed(config.seed))  # own dropout stream per rank
        self.split = split
        if train_data is None:
            train_data, val_data, self.split = build_datasets(config)
        self.train_data, self.val_data = train_data, val_data
        self.eval_hook = eval_hook
        self.device = next(model.parameters()).device
        self.collator = PairCollator(config.query_prefix, config.passage_prefix)
        self.sampler = make_sampler(config.sampler, train_data.num_groups, train_data.languages,
                                    self.parallel.per_rank_batch_size, alpha=config.alpha, seed=config.seed,
                                    **self.parallel.sampler_kwargs())
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config))
        self.output_dir = Path(config.output_dir)
        self.state = {"step": 0, "best_val_loss": None, "bad_validations": 0, "stopped_early": False}
        self._best_weights = None

    def _param_groups(self) -> list[dict]:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
        return [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def _embed(self, features: dict) -> torch.Tensor:
        return self._embed_sides(features)[0]

    def _embed_sides(self, *features: dict) -> tuple[torch.Tensor, ...]:
        """Embeddings of each feature dict in one module call: with grad, the training module
        (one DDP forward under several ranks); without, the plain model (no DDP bookkeeping)."""
        module = self.forward_module if torch.is_grad_enabled() else self._local_forward
        with self._autocast():
            out = module(*({k: v.to(self.device) for k, v in f.items()} for f in features))
        return tuple(e.float() for e in out)

    def _loss(self, q: torch.Tensor, p: torch.Tensor, batch: PairBatch) -> torch.Tensor:
        # The one loss call site: under several ranks the plan adds the cross-rank arguments.
        return infonce_loss(q, p, scale=self.config.scale, q_groups=batch.q_groups.to(self.device),
                            p_groups=batch.p_groups.to(self.device), symmetric=self.config.symmetric,
                            backend=self.config.loss_backend, **self.parallel.loss_kwargs())

    def _features(self, batch: PairBatch, chunk: int) -> list[tuple[str, dict]]:
        sides = (("query", batch.queries), ("passage", batch.passages))
        return [(kind, self.model.tokenize(texts[i:i + chunk], kind)) for kind, texts in sides
                for i in range(0, len(texts), chunk)]

    def compute_loss_and_backward(self, batch: PairBatch) -> float:
        """Forward + backward of one batch (gradients accumulate in ``.grad``); returns the loss."""
        chunk = self.config.grad_cache_chunk
        if chunk <= 0:
            q, p = self._embed_sides(self.model.tokenize(batch.queries, "query"),
                                     self.model.tokenize(batch.passages, "passage"))
            loss = self._loss(q, p, batch)
            loss.backward()
            return float(loss.detach())
        # Gradient caching (Gao et al. 2021): embeddings without grad, loss gradient w.r.t. them,
        # then each chunk again with grad, replaying its dropout through the saved RNG states (CPU
        # and CUDA: dropout on a GPU draws from the device generator). Under several ranks the
        # loss does the step's one gather and one reduce-scatter; DDP syncs on the last chunk only.
        pieces = self._features(batch, chunk)
        states, reps = [], []
        with torch.no_grad():
            for _, features in pieces:
                states.append(rng_state())
                reps.append(self._embed(features))
        n_q = sum(1 for kind, _ in pieces if kind == "query")
        q = torch.cat(reps[:n_q]).requires_grad_()
        p = torch.cat(reps[n_q:]).requires_grad_()
        loss = self._loss(q, p, batch)
        loss.backward()
        grads = list(q.grad.split([r.shape[0] for r in reps[:n_q]])) + list(p.grad.split([r.shape[0] for r in reps[n_q:]]))
        end_state = rng_state()
        for i, ((_, features), state, grad) in enumerate(zip(pieces, states, grads)):
            set_rng_state(state)
            with self.parallel.sync_context(self.forward_module, last=i == len(pieces) - 1):
                self._embed(features).backward(grad)
        set_rng_state(end_state)
        return float(loss.detach())

    def training_step(self) -> tuple[float, list]:
        """Draw the next batch, update the model; returns ``(loss, keys)``: the loss of the global
        batch (mean over ranks) and this rank's keys."""
        keys = self.sampler.next_batch()
        batch = self.collator([self.train_data[k] for k in keys])
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.dist.guard(f"training step {self.state['step'] + 1}"):
            loss = self.parallel.context.all_reduce_mean(self.compute_loss_and_backward(batch))
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.state["step"] += 1
        return loss, keys

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validation_loss(self) -> float | None:
        """Mean loss (eval mode, no dropout) over the first ``val_batches`` batches of a
        ``val_sampler`` sampler with seed 0 on the dev data: the same batches for every run.

        Global batch: ``min(batch_size, dev groups)`` rounded down to a multiple of the world
        size; each rank embeds its slice and the loss is the training loss (cross-rank negatives
        included), averaged over ranks: with cross-rank negatives it equals the one-process value.
        """
        if self.val_data is None:
            return None
        world = self.parallel.world_size
        size = min(self.config.batch_size, self.val_data.num_groups) // world
        if size < 1:
            raise ValueError(f"val_data: {self.val_data.num_groups} dev groups cannot give each of {world} ranks "
                             f"an example")
        sampler = make_sampler(self.config.val_sampler, self.val_data.num_groups, self.val_data.languages, size, seed=0,
                               **self.parallel.sampler_kwargs())
        was_training = self.model.training
        self.model.eval()
        losses = []
        with self.dist.guard("validation"):
            for step in range(min(self.config.val_batches, len(sampler))):
                batch = self.collator([self.val_data[k] for k in sampler.batch(0, step)])
                q, p = self._embed_sides(self.model.tokenize(batch.queries, "query"),
                                         self.model.tokenize(batch.passages, "passage"))
                losses.append(float(self._loss(q, p, batch)))
        self.model.train(was_training)
        return self.dist.all_reduce_mean(float(np.mean(losses)))

    def _validate(self, step: int) -> None:
        val = self.validation_loss()
        if val is None:
            return
        self._log({"step": step, "val_loss": val})
        best = self.state["best_val_loss"]
        if best is None or val < best:
            self.state["best_val_loss"], self.state["bad_validations"] = val, 0
            if self.config.patience > 0:
                self._best_weights = copy.deepcopy(self.model.state_dict())
        else:
            self.state["bad_validations"] += 1
            if self.config.patience and self.state["bad_validations"] >= self.config.patience:
                self.state["stopped_early"] = True

    # ------------------------------------------------------------------ bookkeeping
    def _log(self, record: dict) -> None:
        if self.dist.is_main:  # one metrics file per run, written by rank 0
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def save(self) -> Path:
        """Write a checkpoint of every state at the current step (every rank's RNG state is
        gathered; rank 0 writes). Returns the checkpoint folder (on every rank)."""
        with self.dist.guard(f"checkpoint at step {self.state['step']}"):
            rng_states = self.parallel.rng_states()
        if not self.dist.is_main:
            return self.output_dir / f"checkpoint-{self.state['step']:07d}"
        return save_checkpoint(self.output_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                               sampler=self.sampler, trainer_state=dict(self.state), rng_states=rng_states)

    def load(self, path) -> None:
        """Restore a checkpoint folder (model, optimiser, scheduler, sampler, RNG, trainer state)."""
        self.state = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                     sampler=self.sampler, rank=self.dist.rank, world_size=self.dist.world_size)

    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines past ``step`` (written after the checkpoint a resumed run starts from)."""
        path = self.output_dir / "metrics.jsonl"
        if path.is_file():
            lines = [l for l in path.read_text().splitlines() if json.loads(l).get("step", 0) <= step]
            path.write_text("".join(l + "\n" for l in lines))

    def train(self, *, resume: bool | str = False, stop_at: int | None = None, save_model: bool = True) -> dict:
        """Train to ``config.max_steps`` (or early stop).

        Args:
            resume: True = continue from the newest checkpoint in ``output_dir`` (fresh start when
                none), or a checkpoint folder path.
            stop_at: stop after this step (after its checkpoint/validation), as if killed there.
            save_model: write ``output_dir/model`` at the end.

        Returns:
            ``{"steps", "losses": {step: loss}, "final_loss", "best_val_loss", "stopped_early",
            "examples_per_s", "wall_s"}`` (``losses`` holds the steps run by this call).
        """
        cfg = self.config
        main = self.dist.is_main  # rank 0 alone writes files
        if main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            record = {**cfg.to_dict(), **self.parallel.run_record()}
            (self.output_dir / "config.json").write_text(json.dumps(record, indent=1))
            if self.split is not None:
                (self.output_dir / "split.json").write_text(json.dumps(self.split, indent=1))
        if resume:
            path = latest_checkpoint(self.output_dir) if resume is True else Path(resume)
            path = self.dist.broadcast_object(path)  # rank 0's choice: every rank loads the same one
            if path is not None:
                self.load(path)
                log.info("resumed from %s at step %d", path, self.state["step"])
            if main:
                self._truncate_metrics(self.state["step"])
        elif main and (self.output_dir / "metrics.jsonl").exists():
            (self.output_dir / "metrics.jsonl").unlink()
        losses: dict[int, float] = {}
        window, window_time, window_examples = [], 0.0, 0
        total_time, total_examples = 0.0, 0
        start = time.perf_counter()
        bar = None
        if cfg.progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.state["step"], desc=f"train {cfg.sampler}", unit="step")
        while self.state["step"] < cfg.max_steps and not self.state["stopped_early"]:
            t0 = time.perf_counter()
            loss, keys = self.training_step()
            dt = time.perf_counter() - t0
            step = self.state["step"]
            losses[step] = loss
            window.append(loss)
            window_time += dt
            examples = len(keys) * self.parallel.world_size  # the global batch
            window_examples += examples
            total_time += dt
            total_examples += examples
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", ex_s=f"{examples / dt:.1f}")
            if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.max_steps):
                self._log({"step": step, "epoch": self.sampler.epoch, "loss": float(np.mean(window)),
                           "lr": self.scheduler.get_last_lr()[0],
                           "examples_per_s": window_examples / window_time})
                window, window_time, window_examples = [], 0.0, 0
            if cfg.val_every and step % cfg.val_every == 0:
                self._validate(step)
            if self.eval_hook is not None and cfg.eval_every and step % cfg.eval_every == 0:
                self._log({"step": step, "eval": self.eval_hook(self.model, step)})
            if cfg.save_every and (step % cfg.save_every == 0):
                self.save()
            if stop_at is not None and step >= stop_at:
                break
        if bar is not None:
            bar.close()
        finished = self.state["step"] >= cfg.max_steps or self.state["stopped_early"]
        # losses: only when this call trained (resuming a finished run must not log it twice)
        if finished and losses and cfg.val_every and self.state["step"] % cfg.val_every != 0:
            self._validate(self.state["step"])
        if finished and self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)  # early stopping keeps the best validation
        if finished and save_model and main:
            # the folder records the collator's prefixes: Encoder / SentenceTransformer(folder) apply them
            self.model.save_pretrained(self.output_dir / "model",
                                       prefixes={"query": cfg.query_prefix, "passage": cfg.passage_prefix})
        if main and (self.output_dir / "metrics.jsonl").is_file():
            plot_metrics(self.output_dir / "metrics.jsonl", self.output_dir / "loss.png", title=cfg.sampler)
        return {"steps": self.state["step"], "losses": losses,
                "final_loss": losses[max(losses)] if losses else None,
                "best_val_loss": self.state["best_val_loss"], "stopped_early": self.state["stopped_early"],
                "examples_per_s": total_examples / total_time if total_time else None,
                "wall_s": time.perf_counter() - start}
