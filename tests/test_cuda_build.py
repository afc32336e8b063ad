"""The CUDA backend on a machine without a GPU: the HF_CUDA=CHECK compile check (nvcc compiles
every kernels/cuda/*.cu and the stable-ABI glue csrc/cuda/*.cpp against the installed torch, CPU
wheel included; nothing is linked or run) and the registry's answer for backend="cuda" on CPU
tensors. The GPU behaviour of the backend is tested in tests/ops/test_topk.py (marker gpu)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hybrid_fast as hf

REPO = Path(__file__).resolve().parents[1]


def test_cuda_backend_on_cpu_tensors_lists_available_backends():
    q, x = torch.randn(3, 8), torch.randn(20, 8)
    with pytest.raises(RuntimeError, match=r"backend 'cuda' of topk_search is not available .*available: \["):
        hf.topk_search(q, x, 2, backend="cuda")
    report = hf.backends()["ops"]["topk_search"]["cpu"]
    assert "cuda" not in report["available"]


@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("cmake") is None, reason="needs nvcc and cmake")
def test_hf_cuda_check_compiles_kernels_and_glue(tmp_path):
    """cmake -DHF_CUDA=CHECK + the hf_cuda_check target (the CI step of .ci/run): every .cu and
    the glue compile, with no compiler warning from this project's CUDA sources. About 40 s on
    2 cores (under the ~60 s bar for the ``slow`` marker)."""
    build = tmp_path / "cuda-check"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL="2")
    cfg = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), *gen, "-DHF_CUDA=CHECK",
                          "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}"],
                         capture_output=True, text=True, env=env)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    out = subprocess.run(["cmake", "--build", str(build), "--target", "hf_cuda_check", "-j2"],
                         capture_output=True, text=True, env=env)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    objects = {p.name for p in build.rglob("*.o")}
    expected = {f"{p.name}.o" for p in (REPO / "kernels" / "cuda").glob("*.cu")}
    expected |= {f"{p.name}.o" for p in (REPO / "csrc" / "cuda").glob("*.cpp")}
    assert {"topk_select.cu.o", "topk_select.cpp.o", "module.cpp.o"} <= expected
    assert expected <= objects, f"not compiled: {sorted(expected - objects)}"
    ours = [line for line in log.splitlines()
            if "warning" in line.lower() and ("kernels/cuda" in line or "csrc/cuda" in line)]
    assert not ours, "\n".join(ours)
