"""XQuAD split by article for training (:func:`build_datasets`) and the XQuAD-R test set of the
held-out articles (:func:`xquad_r_test_set`): the data side of ``hybrid-fast train`` / ``experiment``.

The settings come from a :class:`hybrid_fast.train.TrainConfig` (read as a plain object: its
``data_dir``, ``languages``, ``dev_articles``, ``test_articles``, ``split_seed``). torch loads
when a dataset is built (:class:`hybrid_fast.sampling.ParallelQADataset`), not at import.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..sampling import ParallelQADataset
    from .lareqa import LareqaDataset

log = logging.getLogger(__name__)


def resolve_training_data(config) -> str:
    """The data folder of a training run: ``config.data_dir``; when it is None, found as the
    experiment finds its data (:func:`hybrid_fast.data.sample.locate_experiment_data`, XQuAD
    only, no download): ``$HYBRID_FAST_DATA``, the download cache, else the packaged sample
    (which holds TrainConfig's default languages; :func:`load_xquad` names the ones it lacks).
    Logs which folder was chosen."""
    if config.data_dir is not None:
        return str(config.data_dir)
    from .sample import SAMPLE_LABEL, locate_experiment_data

    folder, label = locate_experiment_data(config.languages, download=False, flag="--data-dir", subsets=("xquad",))
    if label != SAMPLE_LABEL:  # the sample's choice logs itself
        log.info("data: %s (no --data-dir given: $HYBRID_FAST_DATA, then the download cache)", folder)
    return str(folder)


def load_xquad(config) -> dict:
    """Parse ``<data_dir>/xquad`` in ``config.languages``: ``{lang: [ParallelQA]}`` (file order);
    ``data_dir`` None: :func:`resolve_training_data`.

    Raises:
        FileNotFoundError: the folder or a language's file missing (from the loader).
        ValueError: the folder is the packaged sample and lacks some of ``config.languages`` (the
            message names ``--languages`` and ``--data-dir``).
    """
    from . import load_squad_parallel  # the package's name, so a stand-in set there is used

    folder = Path(resolve_training_data(config))
    try:
        return load_squad_parallel(folder / "xquad", config.languages)
    except FileNotFoundError:
        from .sample import LanguagesNotInSampleError, check_sample_languages, sample_root

        if folder.resolve() != sample_root().resolve():
            raise
        try:  # a language choice the sample cannot serve, not a bad folder
            check_sample_languages(config.languages, flag="--data-dir", subsets=("xquad",))
        except LanguagesNotInSampleError as err:
            raise ValueError(str(err)) from None
        raise


def build_datasets(config, records: dict | None = None
                   ) -> "tuple[ParallelQADataset, ParallelQADataset | None, dict[str, list[str]]]":
    """Split XQuAD in ``config.languages`` by article.

    ``records``: ``{lang: [ParallelQA]}`` already parsed by :func:`load_xquad` (holding at least
    ``config.languages``); default: parsed here from ``config.data_dir``. The result depends only
    on the records and ``languages``, ``dev_articles``, ``test_articles``, ``split_seed`` (no
    global RNG is drawn), so one call can serve every run that shares those fields.

    Returns ``(train, dev or None, split)``; ``split`` = ``{"train", "dev", "test"}`` article titles
    (:func:`hybrid_fast.sampling.split_articles` with ``config.split_seed``). No test article is
    in ``train`` or ``dev``.
    """
    from ..sampling import ParallelQADataset, split_articles

    if records is None:
        records = load_xquad(config)
    titles = [r.article for r in records[config.languages[0]]]
    split = split_articles(titles, config.dev_articles, config.test_articles, seed=config.split_seed)
    train = ParallelQADataset(records, config.languages, articles=split["train"])
    dev = ParallelQADataset(records, config.languages, articles=split["dev"]) if split["dev"] else None
    return train, dev, split


def xquad_r_test_set(data_dir: str | Path, languages, test_articles, *, xquad) -> "LareqaDataset":
    """XQuAD-R in ``languages`` restricted to the questions of ``test_articles`` (XQuAD titles)
    and the candidate sentences of their paragraphs (a :class:`LareqaDataset`).

    ``xquad``: the XQuAD records (``[ParallelQA]``) of ``languages[0]``, already parsed (they map
    question ids to titles).

    Raises:
        ValueError: a test question missing from XQuAD-R, or a paragraph assigned to no split.
    """
    from . import LareqaDataset, load_lareqa  # the package's names (stand-ins set there are used)

    data_dir = Path(data_dir)
    full = load_lareqa(data_dir / "xquad-r", languages)
    article_of = {r.group_id: r.article for r in xquad}
    missing = [q.qid for q in full.questions if q.qid not in article_of]
    if missing:
        raise ValueError(f"xquad-r: {len(missing)} question ids not in XQuAD (e.g. {missing[:3]})")
    test = set(test_articles)
    keep_q = [i for i, q in enumerate(full.questions) if article_of[q.qid] in test]
    paragraph_split = {}
    for i, q in enumerate(full.questions):
        for c in full.relevant[i]:
            cand = full.candidates[c]
            paragraph_split.setdefault((cand.lang, cand.paragraph_index), set()).add(article_of[q.qid] in test)
    unassigned = {(c.lang, c.paragraph_index) for c in full.candidates} - set(paragraph_split)
    if unassigned or any(len(v) != 1 for v in paragraph_split.values()):
        raise ValueError(f"xquad-r: {len(unassigned)} paragraphs without questions or paragraphs in two splits")
    keep_c = [i for i, c in enumerate(full.candidates) if paragraph_split[(c.lang, c.paragraph_index)] == {True}]
    new_index = {old: new for new, old in enumerate(keep_c)}
    return LareqaDataset(languages=full.languages, questions=[full.questions[i] for i in keep_q],
                         candidates=[full.candidates[i] for i in keep_c],
                         relevant=[sorted(new_index[c] for c in full.relevant[i]) for i in keep_q])
