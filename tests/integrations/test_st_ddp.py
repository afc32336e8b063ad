"""The real SentenceTransformerTrainer under torchrun (2 CPU processes, gloo DDP) with
parallel_batch_sampler: at every step each rank trains on its slice of one global batch (same
batch type and language on both ranks, disjoint examples), with cross-rank negatives on."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("accelerate")

from hybrid_fast.sampling import PairCollator, make_sampler  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import st_ddp_script as script  # noqa: E402

pytestmark = pytest.mark.slow  # two processes loading sentence-transformers and the MiniLM: ~1-2 min


def test_every_rank_gets_its_slice_of_the_same_global_batch(tmp_path, minilm_path):
    from transformers import AutoTokenizer

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GLOO_SOCKET_IFNAME": "lo"}
    with socket.socket() as probe:  # a free port for the rendezvous (port 0 hangs the static one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={port}", str(HERE / "st_ddp_script.py"), str(tmp_path)]
    # a new session: on timeout the whole process group (torchrun and its ranks) is killed
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish within 300 s: {stderr[-3000:]}")
    run = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [len(s) for s in seen] == [script.STEPS, script.STEPS]
    data, tokenizer, collate = script.parallel_data(), AutoTokenizer.from_pretrained(minilm_path), PairCollator()
    plans = [make_sampler("hybrid", data.num_groups, data.languages, script.BATCH, alpha=0.5, seed=script.SEED,
                          world_size=2, rank=r) for r in range(2)]
    for step in range(script.STEPS):
        for rank in range(2):
            keys = plans[rank].batch(0, step)
            batch = collate([data[k] for k in keys])
            expected = tokenizer(batch.queries, padding=True, truncation=True, max_length=256)["input_ids"]
            assert seen[rank][step]["input_ids"] == expected, (rank, step)
            assert seen[rank][step]["labels"] == batch.q_groups.tolist()
        assert plans[0].batch_type(0, step) == plans[1].batch_type(0, step)
        assert not {k.group for k in plans[0].batch(0, step)} & {k.group for k in plans[1].batch(0, step)}
