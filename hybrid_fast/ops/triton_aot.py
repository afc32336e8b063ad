"""Ahead-of-time compilation of every Triton kernel for Hopper (sm_90), no GPU needed.

``python -m hybrid_fast.ops.triton_aot`` in a process WITHOUT
``TRITON_INTERPRET`` compiles each kernel in the configurations the launchers use (dtypes, flags,
default tiles) with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` and
prints one JSON line per configuration: PTX/cubin sizes, shared memory, whether the PTX uses
wgmma (Hopper warp-group MMA; expected for the 16-bit tensor-core paths), and the registers and
spill bytes ``ptxas -v`` reports for sm_90a. Tiles, launch options and dtype flags come from the
launchers' own rule functions (``infonce.config`` / ``infonce._dtype_config``, ``topk.config`` /
``topk.dtype_config``), never restated here: InfoNCE at d = 256/512/768, compiled with the
divisibility-by-16 hints the JIT gives those shapes (aligned pointers, sizes and strides % 16 == 0);
top-k at ``TOPK_SHAPE``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from .infonce import triton_kernel as K
from .topk import triton_kernel as T

_TORCH = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "fp64": "float64"}
INFONCE_DS = (256, 512, 768)  # d of the default configurations compiled (benchmark shapes: 512, 768)
TOPK_SHAPE = (1 << 20, 1 << 20, 768)  # (Q, N, d) of the top-k configurations: larger than every default tile
_SIZES = ("B", "N", "D", "stride_q", "stride_p", "stride_dq", "stride_dp")


def _infonce(dt, kind, D, groups=True):
    """The launcher's default configuration (``infonce.config``, ``infonce._dtype_config``) of one
    pass at feature dim D."""
    import torch

    dtype = getattr(torch, _TORCH[dt])
    acc, upcast, prec = K._dtype_config(dtype)
    ct = "fp64" if dt == "fp64" else "fp32"
    cfg = K.config(D, dtype, kind)
    tiles = {k: v for k, v in cfg.items() if k.isupper()}
    opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if kind == "cols":
        kernel = K._cols_kernel
        ptrs = dict(q_ptr=dt, p_ptr=dt, labels_ptr="i64", qg_ptr="i64", pg_ptr="i64", scale_ptr=ct, a_ptr=ct,
                    b_ptr=ct, lse_ptr="fp64", dp_ptr=dt)
        c = dict(HAS_GROUPS=groups, UPCAST=upcast, PRECISION=prec, ACC=acc, **tiles)
    else:
        kernel = K._rows_kernel
        ptrs = dict(q_ptr=dt, p_ptr=dt, labels_ptr="i64", qg_ptr="i64", pg_ptr="i64", scale_ptr=ct, a_ptr=ct,
                    b_ptr=ct, loss_ptr=ct, lse_ptr="fp64", dq_ptr=dt, dsc_ptr=ct)
        c = dict(HAS_GROUPS=groups, COMPUTE_GRAD=kind == "rows", UPCAST=upcast, PRECISION=prec, ACC=acc, **tiles)
    divisible = [n for n in kernel.arg_names if n.endswith("_ptr") or n in _SIZES]
    info = dict(d=D, dtype=dt, kind=kind, n_dchunks=cfg["n_dchunks"], tiles=tiles, divisible=divisible)
    return kernel, ptrs, c, opts, info


def _topk(dt, kp, exclude=False):
    """The launcher's default configuration (``topk.config``, ``topk.dtype_config``) for k = kp
    at ``TOPK_SHAPE``."""
    import torch

    dtype = getattr(torch, _TORCH[dt])
    upcast, prec = T.dtype_config(dtype, dtype)
    ptrs = dict(q_ptr=dt, x_ptr=dt, ex_ptr="i64", out_ptr="i64")
    cfg = T.config(*TOPK_SHAPE, kp)
    tiles = {k: v for k, v in cfg.items() if k.isupper()}
    c = dict(HAS_EXCLUDE=exclude, UPCAST=upcast, PRECISION=prec, **tiles)
    return T._topk_kernel, ptrs, c, dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])


def specs():
    """(name, kernel, pointer types, constexprs, options, wgmma expected, info) per configuration."""
    out = []
    for dt in ("bf16", "fp16", "fp32"):
        for D in INFONCE_DS:
            for kind in ("fwd", "rows", "cols"):
                if kind == "fwd" and D != 768:
                    continue
                *rest, info = _infonce(dt, kind, D)
                name = f"infonce_{'rows_fwd' if kind == 'fwd' else kind}_d{D}_{dt}"
                out.append((name, *rest, dt != "fp32", info))
    *rest, info = _infonce("bf16", "rows", 768, groups=False)
    out.append(("infonce_rows_d768_bf16_nogroups", *rest, True, info))
    for dt in ("bf16", "fp32"):
        for kp in (16, 128):
            # BLOCK_Q = 16 for KP > 64 (register budget of the candidate lists): below wgmma's
            # 64-row minimum, so that configuration uses mma.sync tensor cores.
            out.append((f"topk_{dt}_kp{kp}", *_topk(dt, kp), dt != "fp32" and kp <= 64, {}))
    out.append(("topk_bf16_kp16_exclude", *_topk("bf16", 16, True), True, {}))
    return out


def compile_one(kernel, ptrs, constexprs, options, arch=90, divisible=()):
    """``divisible``: argument names the launcher's JIT would specialise as multiples of 16
    (16-byte aligned pointers, sizes/strides % 16 == 0, as at B = N = 32768, d = 768): without
    them the masked loads are not vectorised and the register counts are not the real ones."""
    names = kernel.arg_names
    sig = {n: "constexpr" if n in constexprs else ("*" + ptrs[n] if n in ptrs else "i32") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    src = ASTSource(fn=kernel, signature=sig, constexprs={(names.index(k),): v for k, v in constexprs.items()},
                    attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def ptxas_usage(ptx: str, arch: int = 90) -> dict:
    """Registers and spills of a kernel for sm_<arch>a: ``ptxas -v`` (Triton's own ptxas) on its
    PTX. (Triton reads n_regs/n_spills only when loading the cubin on a GPU.)"""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}a", src, "-o", src + ".o"],
                           capture_output=True, text=True, check=True)
    log = r.stderr
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, log)) else 0  # noqa: E731
    return dict(n_regs=num(r"Used (\d+) registers"), spill_stores=num(r"(\d+) bytes spill stores"),
                spill_loads=num(r"(\d+) bytes spill loads"), stack=num(r"(\d+) bytes stack frame"))


def main(arch: int = 90, usage: bool = True):
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("aot.main() must run without TRITON_INTERPRET=1 (the interpreter compiles nothing)")
    for name, kernel, ptrs, c, opts, want_wgmma, info in specs():
        t = time.perf_counter()
        k = compile_one(kernel, ptrs, c, opts, arch, divisible=info.get("divisible", ()))
        ptx = k.asm["ptx"]
        row = dict(name=name, arch=arch, seconds=round(time.perf_counter() - t, 2), ptx_bytes=len(ptx),
                   cubin_bytes=len(k.asm.get("cubin", b"")), shared=k.metadata.shared,
                   wgmma="wgmma" in ptx, wgmma_expected=want_wgmma, mma_sync="mma.sync" in ptx,
                   tensor_cores_expected=not name.endswith("fp32") and "fp32_" not in name,
                   num_warps=opts["num_warps"], num_stages=opts["num_stages"],
                   **{k_: v for k_, v in info.items() if k_ != "divisible"})
        if usage:
            row.update(ptxas_usage(ptx, arch))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
