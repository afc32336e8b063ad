"""Ahead-of-time compilation of every Triton kernel for Hopper (sm_90), no GPU needed.

``python -c "from hybrid_fast.triton import aot; aot.main()"`` in a process WITHOUT
``TRITON_INTERPRET`` compiles each kernel in the configurations the launchers use (dtypes, flags,
default tiles) with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` and
prints one JSON line per configuration: PTX/cubin sizes, shared memory, whether the PTX uses
wgmma (Hopper warp-group MMA; expected for the 16-bit tensor-core paths).
"""
from __future__ import annotations

import json
import os
import time

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import infonce as K
from . import topk as T

_TL = {"bf16": tl.float32, "fp16": tl.float32, "fp32": tl.float32, "fp64": tl.float64}


def _infonce_rows(dt, grad, groups=True):
    acc, upcast, prec = _TL[dt], dt in ("fp32", "fp64"), "ieee" if dt in ("fp32", "fp64") else "tf32"
    ct = "fp64" if dt == "fp64" else "fp32"
    ptrs = dict(q_ptr=dt, p_ptr=dt, labels_ptr="i64", qg_ptr="i64", pg_ptr="i64", scale_ptr=ct, a_ptr=ct,
                b_ptr=ct, loss_ptr=ct, lse_ptr="fp64", dq_ptr=dt, dsc_ptr=ct)
    bm = 64 if grad else 128
    c = dict(HAS_GROUPS=groups, COMPUTE_GRAD=grad, UPCAST=upcast, PRECISION=prec, ACC=acc, BLOCK_M=bm,
             BLOCK_N=64, BLOCK_K=64, BLOCK_D=256)
    return K._rows_kernel, ptrs, c, dict(num_warps=8, num_stages=3)


def _infonce_cols(dt, groups=True):
    acc, upcast, prec = _TL[dt], dt in ("fp32", "fp64"), "ieee" if dt in ("fp32", "fp64") else "tf32"
    ct = "fp64" if dt == "fp64" else "fp32"
    ptrs = dict(q_ptr=dt, p_ptr=dt, labels_ptr="i64", qg_ptr="i64", pg_ptr="i64", scale_ptr=ct, a_ptr=ct,
                b_ptr=ct, lse_ptr="fp64", dp_ptr=dt)
    c = dict(HAS_GROUPS=groups, UPCAST=upcast, PRECISION=prec, ACC=acc, BLOCK_M=64, BLOCK_N=64, BLOCK_K=64,
             BLOCK_D=256)
    return K._cols_kernel, ptrs, c, dict(num_warps=8, num_stages=3)


def _topk(dt, kp, exclude=False):
    upcast = dt == "fp32"
    ptrs = dict(q_ptr=dt, x_ptr=dt, ex_ptr="i64", out_ptr="i64")
    bq = 64 if kp <= 64 else 16
    c = dict(HAS_EXCLUDE=exclude, UPCAST=upcast, PRECISION="ieee" if upcast else "tf32", BLOCK_Q=bq,
             BLOCK_N=max(128, kp), BLOCK_K=64, KP=kp)
    return T._topk_kernel, ptrs, c, dict(num_warps=8 if bq * max(128, kp) >= 64 * 128 else 4, num_stages=3)


def specs():
    """(name, kernel, pointer types, constexprs, options, wgmma expected) per configuration."""
    out = []
    for dt in ("bf16", "fp16", "fp32"):
        out.append((f"infonce_rows_fwd_{dt}", *_infonce_rows(dt, False), dt != "fp32"))
        out.append((f"infonce_rows_grad_{dt}", *_infonce_rows(dt, True), dt != "fp32"))
        out.append((f"infonce_cols_{dt}", *_infonce_cols(dt), dt != "fp32"))
    out.append(("infonce_rows_grad_bf16_nogroups", *_infonce_rows("bf16", True, False), True))
    for dt in ("bf16", "fp32"):
        for kp in (16, 128):
            # BLOCK_Q = 16 for KP > 64 (register budget of the candidate lists): below wgmma's
            # 64-row minimum, so that configuration uses mma.sync tensor cores.
            out.append((f"topk_{dt}_kp{kp}", *_topk(dt, kp), dt != "fp32" and kp <= 64))
    out.append(("topk_bf16_kp16_exclude", *_topk("bf16", 16, True), True))
    return out


def compile_one(kernel, ptrs, constexprs, options, arch=90):
    names = kernel.arg_names
    sig = {n: "constexpr" if n in constexprs else ("*" + ptrs[n] if n in ptrs else "i32") for n in names}
    src = ASTSource(fn=kernel, signature=sig, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def main(arch: int = 90):
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("aot.main() must run without TRITON_INTERPRET=1 (the interpreter compiles nothing)")
    for name, kernel, ptrs, c, opts, want_wgmma in specs():
        t = time.perf_counter()
        k = compile_one(kernel, ptrs, c, opts, arch)
        ptx = k.asm["ptx"]
        print(json.dumps(dict(name=name, arch=arch, seconds=round(time.perf_counter() - t, 2), ptx_bytes=len(ptx),
                              cubin_bytes=len(k.asm.get("cubin", b"")), shared=k.metadata.shared,
                              wgmma="wgmma" in ptx, wgmma_expected=want_wgmma, mma_sync="mma.sync" in ptx,
                              tensor_cores_expected=not name.endswith("fp32") and "fp32_" not in name,
                              num_warps=opts["num_warps"])), flush=True)


if __name__ == "__main__":
    main()
