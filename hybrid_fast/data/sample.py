"""The data sample shipped inside the package: the offline default of ``hybrid-fast experiment``.

``sample/sample.tar.xz`` (built by ``scripts/build_sample.py``; sources and licences in
``sample/NOTICE.md`` and ``sample/LICENSE``) holds, in the quick preset's languages (de en es tr
vi): XQuAD (every article), XQuAD-R (the quick preset's test articles only) and a BEIR-format
slice of DBpedia-Entity (``beir/dbpedia-sample``). :func:`sample_root` unpacks it once into
``$HYBRID_FAST_CACHE/sample/<hash>/`` (a temporary folder when the cache is not writable).

:func:`resolve_experiment_data` is the experiment's data resolution: explicit ``--data``, then
``$HYBRID_FAST_DATA``, the download cache, a download, and last the packaged sample.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from .sources import cache_root, is_offline, missing_files, resolve_data_dir

log = logging.getLogger(__name__)

SAMPLE_LABEL = "packaged sample"
SAMPLE_ARCHIVE = Path(__file__).resolve().parent / "sample" / "sample.tar.xz"
SAMPLE_BEIR = "dbpedia-sample"


def _unpack(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target`` atomically (a sibling temporary folder, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if not m.isfile() or m.name.startswith("/") or ".." in Path(m.name).parts]
            if bad:
                raise ValueError(f"{archive}: unexpected members {bad[:3]}")
            tar.extractall(staging, members=members)
        try:
            staging.replace(target)
        except OSError:  # another process unpacked it first
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sample_root() -> Path:
    """The unpacked packaged sample (unpacked on first call; later calls reuse it).

    Raises:
        FileNotFoundError: the archive is not in the installed package.
    """
    if not SAMPLE_ARCHIVE.is_file():
        raise FileNotFoundError(f"packaged sample missing from the installed package: {SAMPLE_ARCHIVE}")
    digest = hashlib.sha256(SAMPLE_ARCHIVE.read_bytes()).hexdigest()[:16]
    for parent in (cache_root() / "sample", Path(tempfile.gettempdir()) / f"hybrid_fast-sample-{os.getuid()}"):
        target = parent / digest
        if (target / "manifest.json").is_file():
            return target
        try:
            _unpack(SAMPLE_ARCHIVE, target)
            return target
        except OSError as err:
            log.debug("cannot unpack the sample into %s (%s)", parent, err)
    raise FileNotFoundError(f"could not unpack {SAMPLE_ARCHIVE} into {cache_root() / 'sample'} or the temp folder")


def sample_manifest() -> dict:
    """``manifest.json`` of the sample: ``languages``, ``test_articles``, ``beir`` folder names."""
    return json.loads((sample_root() / "manifest.json").read_text())


def sample_beir_folder() -> Path:
    """The packaged BEIR folder (``beir/dbpedia-sample``)."""
    return sample_root() / "beir" / SAMPLE_BEIR


#: The file of a language in each data set folder the experiment reads.
_LANGUAGE_FILES = {"xquad": "xquad.{lang}.json", "xquad-r": "{lang}.json"}


class LanguagesNotInSampleError(FileNotFoundError):
    """No data folder was given or found and the packaged sample lacks some of the languages."""


def _experiment_files(languages: Sequence[str], subsets: Sequence[str]) -> dict[str, list[str]]:
    return {sub: [_LANGUAGE_FILES[sub].format(lang=lang) for lang in languages] for sub in subsets}


def _missing(root: Path, needed: dict[str, list[str]]) -> list[str]:
    """``needed``'s files (``{subfolder: [names]}``) that ``root`` lacks, as ``sub/name`` paths."""
    return missing_files(root, [f"{sub}/{f}" for sub, files in needed.items() for f in files])


def locate_experiment_data(languages: Sequence[str], *, download: bool | None = None, flag: str = "--data",
                           subsets: Sequence[str] = ("xquad", "xquad-r")) -> tuple[Path, str]:
    """The data folder when none is given: ``$HYBRID_FAST_DATA``; the download cache
    (``$HYBRID_FAST_CACHE/data``), each when it holds ``subsets`` (``xquad/xquad.{lang}.json``,
    ``xquad-r/{lang}.json``) for ``languages``; a download into that cache (unless offline or
    ``download=False``); else the packaged sample (one INFO log line says so), returned without
    checking that it holds ``languages`` (:func:`check_sample_languages`).

    Returns:
        ``(folder, source)``: ``source`` is ``str(folder)`` except ``"packaged sample"``.
    """
    needed = _experiment_files(languages, subsets)
    roots = [Path(os.environ["HYBRID_FAST_DATA"])] if os.environ.get("HYBRID_FAST_DATA") else []
    roots.append(cache_root() / "data")
    for root in roots:
        if not _missing(root, needed):
            return root, str(root)
    allow = (not is_offline()) if download is None else download
    if allow:
        try:
            for name, files in needed.items():
                resolve_data_dir(name, files=files, download=True)
            return cache_root() / "data", str(cache_root() / "data")
        except FileNotFoundError as err:
            log.info("download failed (%s)", str(err).split(";")[0])
    root = sample_root()
    log.info("data: using the packaged sample (%s%s); pass %s DIR or set HYBRID_FAST_DATA for the full sets", root,
             "; XQuAD-R of the quick split's test articles only" if "xquad-r" in subsets else "", flag)
    return root, SAMPLE_LABEL


def check_sample_languages(languages: Sequence[str], *, flag: str = "--data",
                           subsets: Sequence[str] = ("xquad", "xquad-r")) -> None:
    """Raise :class:`LanguagesNotInSampleError` (naming ``--languages`` and ``flag``) when the
    packaged sample lacks ``subsets`` of some of ``languages``."""
    missing = _missing(sample_root(), _experiment_files(languages, subsets))
    if missing:
        raise LanguagesNotInSampleError(f"--languages: the packaged sample holds {sample_manifest()['languages']}, "
                                        f"got {list(languages)} (missing {missing[:3]}); pass {flag} DIR with the "
                                        "full sets")


def resolve_experiment_data(path: str | os.PathLike | None, languages: Sequence[str], *,
                            download: bool | None = None, flag: str = "--data",
                            subsets: Sequence[str] = ("xquad", "xquad-r")) -> tuple[Path, str]:
    """Find a folder holding ``xquad/xquad.{lang}.json`` and ``xquad-r/{lang}.json`` for ``languages``
    (``subsets``: only those of the two folders, e.g. ``("xquad",)``).

    Order: ``path`` (only it, when given); else :func:`locate_experiment_data`
    (``$HYBRID_FAST_DATA``, the download cache, a download, the packaged sample), the sample
    checked to hold ``languages``.

    Returns:
        ``(folder, source)``: ``source`` is ``str(folder)`` except ``"packaged sample"``.

    Raises:
        FileNotFoundError: ``path`` missing or lacking files (the message names ``flag``), or
            (:class:`LanguagesNotInSampleError`) nothing found and the sample lacks a language.
    """
    if path is not None:
        needed = _experiment_files(languages, subsets)
        root = Path(path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{flag}: expected a folder holding {' and '.join(f'{s}/' for s in subsets)}, "
                                    f"got {str(path)!r} (not a folder)")
        missing = _missing(root, needed)
        if missing:
            raise FileNotFoundError(f"{flag}: expected a folder holding {', '.join(sorted({m for m in missing}))[:300]}, "
                                    f"got {str(path)!r} (missing {len(missing)} files)")
        return root, str(root)
    root, label = locate_experiment_data(languages, download=download, flag=flag, subsets=subsets)
    if label == SAMPLE_LABEL:
        check_sample_languages(languages, flag=flag, subsets=subsets)
    return root, label
