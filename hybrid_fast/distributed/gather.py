"""Collectives with gradient for cross-rank negatives, on ``torch.distributed``.

:class:`AllGatherRows` all-gathers equal-sized row blocks into a ``(W, M, ...)`` buffer; its
backward reduce-scatters (sums) the buffer's gradient back to the owners. Ragged per-rank sizes
are padded to ``M = max(rows)`` before the collective and compacted with ordinary (differentiable)
torch ops after it, so the Function itself only ever moves equal blocks.

:func:`cross_rank_candidates` builds, for :func:`hybrid_fast.infonce_loss` with
``gather_across_devices=True``, the global candidate set of each rank's local queries: candidates
(and, for the symmetric term, queries) of every rank in rank order, labels offset by the gathered
candidate counts of the preceding ranks, group ids gathered with them.

Collectives used: ``all_gather_single`` / ``reduce_scatter_single`` (``*_into_tensor`` /
``*_tensor`` on older torch), falling back to ``all_gather`` (list) / ``all_reduce`` + slice where
the backend lacks them. ``torch.distributed.nn.all_gather`` is deliberately not used (its backward
has changed between torch versions and is untested on gloo CPU).

Every rank must call the same collectives in the same order: the functions here exchange a
small metadata row first and raise the same error on every rank when the ranks disagree
(dimension, dtype, presence of group ids, which inputs require grad, scale), instead of hanging.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import torch
import torch.distributed as dist

# Backends (by name) found to lack the single-tensor collectives; filled on first failure.
_NO_SINGLE_TENSOR: set[str] = set()
# Tests set this to exercise the list all_gather / all_reduce fallback on a backend that has both.
FORCE_FALLBACK = False

DTYPE_CODES = {  # dtypes as int64 codes for metadata all-gathers
    torch.float32: 1, torch.float64: 2, torch.bfloat16: 3, torch.float16: 4, torch.int64: 5}


def _collective(name_new: str, name_old: str):
    return getattr(dist, name_new, None) or getattr(dist, name_old)


def _use_single_tensor(group) -> bool:
    return not FORCE_FALLBACK and dist.get_backend(group) not in _NO_SINGLE_TENSOR


def _unsupported(err: Exception) -> bool:
    msg = str(err).lower()
    return "not support" in msg or "unsupported" in msg or "not implemented" in msg


def _comm_device(t: torch.Tensor, group) -> torch.device:
    """Where a collective on ``t`` runs: NCCL moves only CUDA tensors, so CPU bookkeeping
    tensors (sizes, search partials) go through the current CUDA device there."""
    if t.device.type == "cpu" and dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def all_gather_blocks(block: torch.Tensor, group=None) -> torch.Tensor:
    """All-gather one equal-shaped ``block`` (at least 1-D) per rank into a ``(W, *block.shape)``
    tensor on ``block``'s device (no grad)."""
    device = _comm_device(block, group)
    if device != block.device:
        return all_gather_blocks(block.to(device), group).to(block.device)
    W = dist.get_world_size(group)
    block = block.contiguous()
    out = block.new_empty((W,) + tuple(block.shape))
    if _use_single_tensor(group):
        try:  # the concatenated (W * rows, ...) form: the one every backend accepts
            _collective("all_gather_single", "all_gather_into_tensor")(out.view((-1,) + tuple(block.shape[1:])), block,
                                                                      group=group)
            return out
        except (RuntimeError, NotImplementedError) as err:  # same outcome on every rank: no hang
            if not _unsupported(err):
                raise
            _NO_SINGLE_TENSOR.add(dist.get_backend(group))
    dist.all_gather(list(out.unbind(0)), block, group=group)
    return out


def reduce_scatter_blocks(blocks: torch.Tensor, group=None) -> torch.Tensor:
    """Sum ``blocks`` ``(W, ...)`` over ranks and return this rank's block (no grad)."""
    device = _comm_device(blocks, group)
    if device != blocks.device:
        return reduce_scatter_blocks(blocks.to(device), group).to(blocks.device)
    blocks = blocks.contiguous()
    rank = dist.get_rank(group)
    if _use_single_tensor(group):
        out = blocks.new_empty(blocks.shape[1:])
        try:
            _collective("reduce_scatter_single", "reduce_scatter_tensor")(
                out, blocks.view((-1,) + tuple(blocks.shape[2:])), group=group)
            return out
        except (RuntimeError, NotImplementedError) as err:
            if not _unsupported(err):
                raise
            _NO_SINGLE_TENSOR.add(dist.get_backend(group))
    # Fallback: all-reduce the whole buffer (W x the bytes of a reduce-scatter), keep our block.
    total = blocks.clone()
    dist.all_reduce(total, group=group)
    return total[rank].clone()


class AllGatherRows(torch.autograd.Function):
    """``(M, ...)`` block per rank -> ``(W, M, ...)``; backward: reduce-scatter (sum) to the owner.

    The gradient a rank receives for its block is the sum, over all ranks, of the gradients of
    their losses w.r.t. that block: the gradient of ``sum_r loss_r``. DDP then averages parameter
    gradients over ranks, i.e. differentiates ``(1/W) sum_r loss_r``.
    """

    @staticmethod
    def forward(ctx, block, group):
        ctx.group = group
        return all_gather_blocks(block, group)

    @staticmethod
    def backward(ctx, grad):
        return reduce_scatter_blocks(grad, ctx.group), None


def pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with zero rows appended up to ``rows`` (``t`` itself when it has that many)."""
    if t.shape[0] == rows:
        return t
    return torch.cat([t, t.new_zeros((rows - t.shape[0],) + tuple(t.shape[1:]))])


def _compact(buf: torch.Tensor, start: int, counts: list[int]) -> torch.Tensor:
    """Rows ``[start, start + counts[r])`` of ``buf[r]`` for every rank r, concatenated in rank order."""
    if len(set(counts)) == 1 and start == 0 and buf.shape[1] == counts[0]:
        return buf.reshape((-1,) + tuple(buf.shape[2:]))  # a view: the common equal-size case
    return torch.cat([buf[r, start:start + n] for r, n in enumerate(counts)])


def _float_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


class CrossRank(NamedTuple):
    """The global problem of one rank (see :func:`cross_rank_candidates`)."""

    p: torch.Tensor  # (N_global, d) candidates of every rank, in rank order
    labels: torch.Tensor  # (B_local,) positives of the local queries, indices into ``p``
    p_groups: torch.Tensor | None  # (N_global,)
    q: torch.Tensor | None  # (B_global, d) queries of every rank (symmetric only)
    q_labels: torch.Tensor | None  # (B_local,) index of each local query in ``q`` (symmetric only)
    q_groups: torch.Tensor | None  # (B_global,) (symmetric with groups only)
    mean_factor: float | None  # multiply a local "mean" by this (None: 1, equal batch sizes)


def cross_rank_candidates(q, p, labels, q_groups, p_groups, *, scale, symmetric: bool, group=None) -> CrossRank | None:
    """Gather the candidates (and queries, for ``symmetric``) of every rank of ``group``.

    Inputs are one rank's validated local batch: ``q`` (B_r, d), ``p`` (N_r, d), ``labels``
    (B_r,) indices into the local ``p``, optional group ids (both or neither), ``scale`` 0-d.
    Returns None when torch.distributed is not initialised (the local problem is the global one).

    Layout: rank r's candidates occupy rows ``[sum(N_<r), sum(N_<r) + N_r)`` of the gathered
    ``p``; its labels shift by ``sum(N_<r)`` (the gathered counts, never ``r * B_r``: with hard
    negatives ``N_r != B_r``). Group ids travel with their rows, so a duplicate of a passage on
    another rank is masked too (the kernels never mask the labelled positive itself).

    Ragged batches: N_r and B_r may differ between ranks (rows are padded to the largest block
    for the collective and compacted after it). ``mean_factor = W * B_r / B_global`` makes the
    average over ranks of the local "mean" losses equal the global mean (None when all B_r are
    equal, so equal batches are the plain local mean bit for bit).

    Collectives: one metadata all-gather (W x 8 int64), one all-gather of the rows
    (``p``, and ``q`` when symmetric: W x max(N_r + B_r) x d elements), one of the group ids when
    present; in backward, one reduce-scatter of the rows' gradient.

    Memory per rank: O(W * (N_r + B_r) * d) for the gathered rows and their gradient.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    W, rank = dist.get_world_size(group), dist.get_rank(group)
    B, N, d = q.shape[0], p.shape[0], q.shape[1]
    has_groups = p_groups is not None
    needs_grad = torch.is_grad_enabled() and (p.requires_grad or (symmetric and q.requires_grad))
    meta = torch.tensor([B, N, d, DTYPE_CODES[q.dtype], int(has_groups), int(symmetric), int(needs_grad),
                         _float_bits(scale.detach())], dtype=torch.int64, device=q.device)
    meta_all = all_gather_blocks(meta, group).cpu()
    for col, what in ((2, "feature dim d"), (3, "dtype"), (4, "presence of group ids (q_groups/p_groups)"),
                      (5, "symmetric"), (6, "requires_grad of the gathered embeddings"), (7, "scale")):
        values = meta_all[:, col].tolist()
        if len(set(values)) != 1:
            shown = [struct.unpack("<d", struct.pack("<q", v))[0] for v in values] if col == 7 else values
            raise ValueError(f"gather_across_devices: every rank must pass the same {what}; got "
                             f"{dict(enumerate(shown))} by rank (rank {rank} of {W})")
    B_all, N_all = meta_all[:, 0].tolist(), meta_all[:, 1].tolist()

    rows = torch.cat([p, q]) if symmetric else p
    M = max(n + (b if symmetric else 0) for n, b in zip(N_all, B_all))
    buf = AllGatherRows.apply(pad_rows(rows, M), group)  # (W, M, d)
    p_glob = _compact(buf, 0, N_all)
    p_off, q_off = sum(N_all[:rank]), sum(B_all[:rank])
    out_labels = labels + p_off
    q_glob = q_labels = q_groups_glob = p_groups_glob = None
    if symmetric:
        # rank r's queries sit after its N_r candidates in its block
        q_glob = torch.cat([buf[r, n:n + b] for r, (n, b) in enumerate(zip(N_all, B_all))])
        q_labels = torch.arange(B, device=q.device) + q_off
    if has_groups:
        g_rows = torch.cat([p_groups, q_groups]) if symmetric else p_groups
        g_buf = all_gather_blocks(pad_rows(g_rows, M), group)
        p_groups_glob = _compact(g_buf, 0, N_all).contiguous()
        if symmetric:
            q_groups_glob = torch.cat([g_buf[r, n:n + b] for r, (n, b) in enumerate(zip(N_all, B_all))])
    B_glob = sum(B_all)
    factor = None if len(set(B_all)) == 1 else W * B / B_glob
    return CrossRank(p_glob.contiguous(), out_labels, p_groups_glob, None if q_glob is None else q_glob.contiguous(),
                     q_labels, q_groups_glob, factor)
