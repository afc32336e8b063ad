"""hybrid_fast.distributed.runtime and the trainer's DataParallelPlan: arguments and errors
(in-process; the collectives themselves are exercised by test_train_ddp.py on spawned ranks)."""
from __future__ import annotations

import json

import pytest
import torch

from hybrid_fast.distributed import DistContext, DistributedError, init_distributed
from hybrid_fast.train.config import RUN_RECORD_KEYS, TrainConfig, load_config_file
from hybrid_fast.train.parallel import DataParallelPlan, MultiForward

TORCHRUN_ENV = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}


def test_without_torchrun_the_context_is_one_process():
    for env in ({}, {"WORLD_SIZE": "1"}):
        ctx = init_distributed(env=env)
        assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
        assert ctx.all_reduce_mean(2.5) == 2.5 and ctx.all_gather_object("x") == ["x"]
        assert ctx.broadcast_object(7) == 7
        ctx.barrier()
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("change, match", [
    (dict(RANK=None), "RANK"), (dict(RANK="2"), "RANK"), (dict(MASTER_ADDR=None), "MASTER_ADDR"),
    (dict(MASTER_PORT=""), "MASTER_PORT"), (dict(WORLD_SIZE="two"), "WORLD_SIZE"), (dict(WORLD_SIZE="0"), "WORLD_SIZE"),
])
def test_bad_torchrun_environment_is_named(change, match):
    env = {k: v for k, v in {**TORCHRUN_ENV, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        init_distributed("gloo", env=env)
    assert not torch.distributed.is_initialized()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="backend: expected one of"):
        init_distributed("mpi", env=TORCHRUN_ENV)
    with pytest.raises(ValueError, match="timeout_s"):
        init_distributed("gloo", 0, env=TORCHRUN_ENV)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'nccl' needs CUDA"):
            init_distributed("nccl", env=TORCHRUN_ENV)
    with pytest.raises(ValueError, match="dist_timeout_s"):
        TrainConfig(dist_timeout_s=0)
    with pytest.raises(ValueError, match="dist_backend"):
        TrainConfig(dist_backend="mpi")


def test_guard_relabels_collective_failures_only():
    ctx = DistContext(rank=1, world_size=2, backend="gloo", timeout_s=5.0)
    with pytest.raises(DistributedError, match=r"rank 1/2: a collective failed during step 7 .*timeout 5 s"):
        with ctx.guard("step 7"):
            raise RuntimeError("[gloo/transport/tcp/pair.cc:537] Connection closed by peer")
    with pytest.raises(ValueError, match="not a collective"):  # user errors pass unchanged
        with ctx.guard("step 7"):
            raise ValueError("not a collective")
    with pytest.raises(RuntimeError, match="gloo"):  # one process: nothing to relabel
        with DistContext().guard("step"):
            raise RuntimeError("gloo")


def test_plan_splits_the_global_batch_and_is_the_identity_on_one_process():
    plan = DataParallelPlan(DistContext(rank=1, world_size=4), 32)
    assert (plan.per_rank_batch_size, plan.sampler_kwargs()) == (8, {"rank": 1, "world_size": 4})
    assert plan.loss_kwargs() == {"gather_across_devices": True, "process_group": None}
    assert plan.run_record() == {"world_size": 4, "global_batch_size": 32, "per_rank_batch_size": 8}
    assert plan.rank_seed(0) != plan.rank_seed(1) and DataParallelPlan(DistContext(), 8).rank_seed(0) is None
    assert DataParallelPlan(DistContext(rank=1, world_size=4), 32, cross_rank_negatives=False).loss_kwargs() == {}
    one = DataParallelPlan(DistContext(), 6)
    assert one.loss_kwargs() == {} and one.per_rank_batch_size == 6
    module = MultiForward(torch.nn.Linear(2, 2))
    assert one.wrap(module) is module
    with pytest.raises(ValueError, match="multiple of the world size \\(4\\), got 30"):
        DataParallelPlan(DistContext(rank=0, world_size=4), 30)


def test_a_runs_config_json_reads_back_as_a_config(tmp_path):
    record = {**TrainConfig(batch_size=8).to_dict(), "world_size": 2, "global_batch_size": 8, "per_rank_batch_size": 4}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(record))
    assert set(RUN_RECORD_KEYS) <= set(record)
    assert TrainConfig(**load_config_file(path)) == TrainConfig(batch_size=8)
