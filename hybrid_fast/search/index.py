"""ExactIndex: a flat exact inner-product / cosine index over :func:`hybrid_fast.topk_search`.

What an index is (FAISS's layering): the metric, the storage dtype, the vectors (in memory, or
a memory-mapped ``.npy`` that is streamed in chunks and never loaded whole) and optional doc
ids. Scoring and k-selection are the op's business; this module only chooses the corpus
pieces, merges their partial top-k lists under the same total order (score desc, id asc) and
formats results.
"""
from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..ops._common.validation import check_finite, compute_dtype
from ..ops.topk import METRICS, normalize_rows, topk_search
from ..ops.topk.inputs import exclude_tensor
from ..ops.topk.merge import topk_over_chunks

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
_NP_STORAGE = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16,
               torch.float64: np.float64}
_DEFAULT_CHUNK_BYTES = 256 << 20
#: Contents versions, unique in the process: an index takes a new one at creation and at every
#: change of its vectors or ids, so equal versions on every rank mean no shard changed.
_VERSIONS = itertools.count()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def to_beir(scores: torch.Tensor, indices: torch.Tensor, query_ids: Sequence, doc_ids: Sequence | None = None) -> dict:
    """``{query_id: {doc_id: score}}`` from a search result; padding (-1 ids) is dropped.

    ``doc_ids[j]`` names corpus row j (default ``str(j)``); scores become Python floats.
    """
    if len(query_ids) != scores.shape[0]:
        raise ValueError(f"query_ids must name every query: expected {scores.shape[0]}, got {len(query_ids)}")
    out = {}
    for qid, srow, irow in zip(query_ids, scores.tolist(), indices.tolist()):
        out[str(qid)] = {(str(doc_ids[j]) if doc_ids is not None else str(j)): s for s, j in zip(srow, irow) if j >= 0}
    return out


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x


class ExactIndex:
    """Flat exact index: ``search`` returns the exact top-k of :func:`hybrid_fast.topk_search`.

    Args:
        dim: vector dimension d.
        metric: "ip" or "cosine" (vectors are L2-normalised once, at ``add``; queries at search).
        dtype: storage dtype: float32, bfloat16 (half the memory and bytes streamed per search;
            scores are exact fp32 top-k of the stored bf16 values), float16, or float64.

    Sharded mode (``sharded=True``, under an initialised ``torch.distributed`` process group):
    each rank's index holds one contiguous shard of the corpus, shards in rank order (rank r's
    position j is global position ``sum(ntotal of ranks < r) + j``); :meth:`search` is then a
    collective (every rank calls it with the same queries and arguments) that returns global
    positions, merged exactly as one index over the concatenated corpus would
    (:func:`hybrid_fast.distributed.sharded_search`). ``ntotal`` stays this rank's shard size;
    a shard may be empty or smaller than k. BEIR-style output and doc-id excludes need the
    shards' doc ids: gathered (``all_gather_object``) at the first such call and kept; later
    calls gather only each rank's contents version (one int64) and gather the ids again when
    any shard changed since (an ``add`` on any rank).

    Storage: vectors added in memory, or (after :meth:`load` with ``mmap=True`` or
    :meth:`from_npy`) a memory-mapped ``.npy`` streamed ``chunk_rows`` rows at a time, so a
    corpus larger than RAM is searched with O(chunk_rows x d + Q x k) memory. Chunk results are
    merged under the op's order (score desc, id asc), so streaming returns what one call over the
    whole corpus returns (up to fp32 rounding differences of the tiling).
    """

    def __init__(self, dim: int, metric: str = "ip", dtype: torch.dtype = torch.float32, *, sharded: bool = False,
                 process_group=None):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if dtype not in _NP_STORAGE:
            raise TypeError(f"dtype must be one of {tuple(_NP_STORAGE)}, got {dtype}")
        self.dim, self.metric, self.dtype = dim, metric, dtype
        self._chunks: list[torch.Tensor] = []
        self._mmap: np.ndarray | None = None
        self._normalized_on_disk = True
        self._doc_ids: list | None = None
        self._pos_cache: tuple[list, dict] | None = None  # (the id list it maps, {str(id): position})
        self._version = next(_VERSIONS)
        self._gathered: tuple[list, list | None] | None = None  # (every rank's version, their ids)
        self.sharded, self.process_group = sharded, process_group

    # ------------------------------------------------------------------ contents
    @property
    def ntotal(self) -> int:
        if self._mmap is not None:
            return int(self._mmap.shape[0])
        return sum(int(c.shape[0]) for c in self._chunks)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def doc_ids(self) -> list | None:
        return self._doc_ids

    def add(self, vectors, ids: Sequence | None = None) -> None:
        """Append (n, dim) vectors (tensor or array, any float dtype; stored in ``dtype``).

        ``ids``: optional n doc ids (str or int), given either at every ``add`` or never.
        """
        if self._mmap is not None:
            raise RuntimeError("this index is memory-mapped (read-only); load it with mmap=False to add vectors")
        v = _as_tensor(vectors, "vectors")
        if v.dim() != 2 or v.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (n, dim={self.dim}), got {tuple(v.shape)}")
        if not v.is_floating_point():
            raise TypeError(f"vectors must be floating point, got {v.dtype}")
        check_finite(v, "vectors")
        had = self.ntotal
        if ids is not None:
            if len(ids) != v.shape[0]:
                raise ValueError(f"ids must name every vector: expected {v.shape[0]}, got {len(ids)}")
            if had and self._doc_ids is None:
                raise ValueError("ids given now but not at an earlier add: give ids at every add or never")
            self._doc_ids = (self._doc_ids or []) + list(ids)
        elif self._doc_ids is not None:
            raise ValueError("this index has doc ids: give ids at every add")
        if self.metric == "cosine":
            v = normalize_rows(v.to(compute_dtype(v.dtype)))
        self._chunks.append(v.to(self.dtype).contiguous().cpu())
        self._changed()

    def _changed(self) -> None:
        """The vectors or ids changed: a new contents version (seen by every rank at the next
        sharded id lookup) and no cached id -> position map."""
        self._version = next(_VERSIONS)
        self._pos_cache = None

    def _corpus(self) -> torch.Tensor:
        if not self._chunks:
            raise ValueError("the index is empty: add vectors before searching")
        if len(self._chunks) > 1:  # consolidate the adds once, lazily
            self._chunks = [torch.cat(self._chunks)]
        return self._chunks[0]

    # ------------------------------------------------------------------ search
    def _exclude_positions(self, exclude, doc_ids):
        """Map doc-id excludes (str or any non-int) to positions; ints are positions already."""
        if exclude is None or isinstance(exclude, torch.Tensor):
            return exclude
        rows = [[v] if isinstance(v, (int, str)) else list(v) for v in exclude]
        if any(not isinstance(x, int) for r in rows for x in r):
            if doc_ids is None:
                raise ValueError("exclude holds doc ids but this index has none; pass positions")
            if self._pos_cache is None or self._pos_cache[0] is not doc_ids:  # own or gathered ids
                self._pos_cache = (doc_ids, {str(d): j for j, d in enumerate(doc_ids)})
            pos = self._pos_cache[1]
            rows = [[x if isinstance(x, int) else pos.get(str(x), -1) for x in r] for r in rows]
        return rows

    def search(self, queries, k: int, *, exclude=None, precision: str = "exact", backend: str = "auto",
               query_ids: Sequence | None = None, chunk_rows: int | None = None, result_on: int | str = "all"):
        """Exact top-k of each query against the stored vectors.

        Args: as :func:`hybrid_fast.topk_search` (``exclude`` may also hold doc ids);
        ``chunk_rows``: rows streamed per step for a memory-mapped index (default: 256 MiB);
        ``result_on`` (sharded mode): "all" ranks get the result, or only that rank (others: None).

        Returns ``(scores, indices)`` ((Q, k), best first, positions in insertion order, padded
        with (-inf, -1)), or ``{query_id: {doc_id: score}}`` (BEIR style) when ``query_ids``
        is given.
        """
        q = _as_tensor(queries, "queries")
        if isinstance(q, torch.Tensor) and q.dim() == 1:
            q = q[None]
        if q.is_floating_point():
            q = q.to(torch.float64) if self.dtype == torch.float64 else (q.float() if q.dtype == torch.float64 else q)
        if self.metric == "cosine" and q.is_floating_point() and q.dim() == 2:
            q = normalize_rows(q)  # the stored vectors were normalised at add
        doc_ids = self._doc_ids
        if self.sharded and (query_ids is not None or exclude is not None):
            doc_ids = self._gathered_doc_ids()
        ex = self._exclude_positions(exclude, doc_ids)
        if self.sharded:
            out = self._search_sharded(q, k, ex, precision, backend, chunk_rows, result_on)
            if out is None:
                return None
            scores, indices = out
        elif self._mmap is None:
            scores, indices = topk_search(q, self._corpus(), k, exclude=ex, precision=precision, backend=backend)
        else:
            scores, indices = self._search_mmap(q, k, ex, precision, backend, chunk_rows)
        if query_ids is None:
            return scores, indices
        return to_beir(scores, indices, query_ids, doc_ids)

    def _gathered_doc_ids(self) -> list | None:
        """Every shard's doc ids in rank order (a collective), None when no shard has any.

        Kept between calls: every call all-gathers the ranks' contents versions (one int64 each);
        the ids themselves are gathered again only when a version differs from the kept one's.
        Every rank decides alike (same gathered versions; a rank with nothing kept has a version
        no rank kept, as versions are unique in a process)."""
        import torch.distributed as dist

        from ..distributed.gather import all_gather_blocks

        if not dist.is_initialized():
            return self._doc_ids
        versions = all_gather_blocks(torch.tensor([self._version], dtype=torch.int64), self.process_group)
        versions = versions.flatten().tolist()
        if self._gathered is not None and self._gathered[0] == versions:
            return self._gathered[1]
        parts = [None] * dist.get_world_size(self.process_group)
        dist.all_gather_object(parts, (self.ntotal, self._doc_ids), group=self.process_group)
        if all(ids is None for _, ids in parts):
            gathered = None
        elif any(ids is None and n > 0 for n, ids in parts):
            raise ValueError("sharded index: some shards have doc ids and others not; give ids on every rank or none")
        else:
            gathered = [d for _, ids in parts for d in (ids or [])]
        self._gathered = (versions, gathered)
        return gathered

    def _search_sharded(self, q, k, exclude, precision, backend, chunk_rows, result_on):
        from ..distributed.search import sharded_search

        if not isinstance(q, torch.Tensor) or q.dim() != 2:
            raise ValueError(f"queries must be (Q, dim={self.dim}), got {getattr(q, 'shape', type(q).__name__)}")
        ex = None if exclude is None else exclude_tensor(exclude, q.shape[0], torch.iinfo(torch.int64).max,
                                                         torch.device("cpu"))

        def local_search(kk, local_ex):
            if self._mmap is None:
                return topk_search(q, self._corpus(), kk, exclude=local_ex, precision=precision, backend=backend)
            return self._search_mmap(q, kk, local_ex, precision, backend, chunk_rows)

        score_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
        return sharded_search(local_search, self.ntotal, q.shape[0], k, exclude=ex, result_on=result_on,
                              process_group=self.process_group, score_dtype=score_dtype)

    def _search_mmap(self, q, k, exclude, precision, backend, chunk_rows):
        N = self.ntotal
        if not isinstance(k, int) or not 1 <= k <= N:
            raise ValueError(f"k must satisfy 1 <= k <= N = {N} (corpus rows), got k = {k}")
        if chunk_rows is None:
            itemsize = torch.empty((), dtype=self.dtype).element_size()
            chunk_rows = max(1, _DEFAULT_CHUNK_BYTES // (self.dim * itemsize))
        ex = None
        if exclude is not None:
            ex = exclude_tensor(exclude, q.shape[0], N, torch.device("cpu"))
        metric = "cosine" if (self.metric == "cosine" and not self._normalized_on_disk) else "ip"

        def chunks():
            for a in range(0, N, chunk_rows):
                with warnings.catch_warnings():  # read-only map: the op never writes its inputs
                    warnings.simplefilter("ignore", UserWarning)
                    chunk = torch.from_numpy(self._mmap[a:a + chunk_rows])
                yield a, chunk.view(torch.bfloat16) if self.dtype == torch.bfloat16 else chunk

        return topk_over_chunks(chunks(), k, ex, lambda rows, kk, local: topk_search(
            q, rows, kk, metric=metric, exclude=local, precision=precision, backend=backend))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the index to directory ``path``: ``vectors.npy`` (bf16 stored as uint16 bits)
        and ``meta.json`` (dim, metric, dtype, count, doc ids)."""
        os.makedirs(path, exist_ok=True)
        if self._mmap is not None:
            arr = self._mmap
        else:
            t = self._corpus() if self._chunks else torch.empty(0, self.dim, dtype=self.dtype)
            arr = (t.view(torch.int16) if self.dtype == torch.bfloat16 else t).numpy().view(_NP_STORAGE[self.dtype])
        np.save(os.path.join(path, "vectors.npy"), arr)
        meta = {"format": "hybrid_fast.ExactIndex/1", "dim": self.dim, "metric": self.metric,
                "dtype": _dtype_name(self.dtype), "ntotal": int(arr.shape[0]),
                "normalized": bool(self._normalized_on_disk), "doc_ids": self._doc_ids}
        with open(os.path.join(path, "meta.json"), "w") as f:
            json.dump(meta, f)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True, sharded: bool = False,
             process_group=None) -> "ExactIndex":
        """Read an index written by :meth:`save`; ``mmap=True`` maps ``vectors.npy`` (searches
        stream it; nothing is read up front), ``mmap=False`` loads it into memory.
        ``sharded``/``process_group``: load this rank's shard of a sharded index (see the class)."""
        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
        if meta.get("format") != "hybrid_fast.ExactIndex/1":
            raise ValueError(f"{path} is not an ExactIndex directory (format {meta.get('format')!r})")
        index = cls(meta["dim"], metric=meta["metric"], dtype=_DTYPES[meta["dtype"]], sharded=sharded,
                    process_group=process_group)
        arr = np.load(os.path.join(path, "vectors.npy"), mmap_mode="r" if mmap else None)
        index._attach(arr, normalized=meta.get("normalized", True), mmap=mmap)
        index._doc_ids = meta.get("doc_ids")
        return index

    @classmethod
    def from_npy(cls, path: str | os.PathLike, *, metric: str = "ip", ids: Sequence | None = None) -> "ExactIndex":
        """Memory-map an existing (N, d) float32/float16/float64 ``.npy`` as a read-only index
        (cosine normalises each chunk at search time)."""
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 2:
            raise ValueError(f"{path} must hold a 2-D (N, d) array, got shape {arr.shape}")
        dtypes = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
                  np.dtype(np.float64): torch.float64}
        if arr.dtype not in dtypes:
            raise TypeError(f"{path} must hold float32, float16 or float64, got {arr.dtype}")
        if ids is not None and len(ids) != arr.shape[0]:
            raise ValueError(f"ids must name every row: expected {arr.shape[0]}, got {len(ids)}")
        index = cls(int(arr.shape[1]), metric=metric, dtype=dtypes[arr.dtype])
        index._attach(arr, normalized=False, mmap=True)
        index._doc_ids = list(ids) if ids is not None else None
        return index

    def _attach(self, arr: np.ndarray, *, normalized: bool, mmap: bool) -> None:
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"stored vectors must have shape (N, dim={self.dim}), got {arr.shape}")
        if mmap:
            self._mmap, self._normalized_on_disk = arr, normalized
            return
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if self.dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        if self.metric == "cosine" and not normalized:
            t = normalize_rows(t)
        self._chunks = [t] if t.shape[0] else []

    def __repr__(self) -> str:
        where = ("mmap" if self._mmap is not None else "memory") + (", sharded" if self.sharded else "")
        return f"ExactIndex(dim={self.dim}, metric={self.metric!r}, dtype={_dtype_name(self.dtype)}, ntotal={self.ntotal}, {where})"
