"""Records and loaders for retrieval data (no model code, no torch at import).

* :func:`load_lareqa` -> :class:`LareqaDataset` (XQuAD-R, MLQA-R).
* :func:`load_squad_parallel` -> ``{lang: [ParallelQA]}`` (XQuAD, MLQA, translated SQuAD).
* :func:`load_beir` -> :class:`BeirDataset`.
* :func:`resolve_data_dir`: local path / env / cache / download resolution.
"""

from .beir import BeirDataset, load_beir, read_qrels
from .lareqa import LareqaCandidate, LareqaDataset, LareqaQuestion, load_lareqa
from .sources import XQUAD_LANGUAGES, XQUAD_R_LANGUAGES, resolve_data_dir
from .squad import ParallelQA, group_ids_shared_by_all, load_squad_parallel, load_squad_parallel_hf

__all__ = [
    "BeirDataset", "load_beir", "read_qrels",
    "LareqaCandidate", "LareqaDataset", "LareqaQuestion", "load_lareqa",
    "ParallelQA", "load_squad_parallel", "load_squad_parallel_hf", "group_ids_shared_by_all",
    "XQUAD_LANGUAGES", "XQUAD_R_LANGUAGES", "resolve_data_dir",
]
