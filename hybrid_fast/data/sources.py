"""Where data files come from: an explicit local path, a local cache, or the network.

Resolution order for :func:`resolve_data_dir` (first hit wins):

1. ``path`` given by the caller: used as is; a missing folder or file is a
   ``FileNotFoundError`` naming it (never a silent fallback to the network).
2. ``$HYBRID_FAST_DATA/<name>`` (e.g. ``HYBRID_FAST_DATA=/work/shared/data``).
3. The download cache ``$HYBRID_FAST_CACHE/data/<name>`` (default ``~/.cache/hybrid_fast``).
4. Download into that cache from the dataset's public URL (GitHub raw files for XQuAD-R and
   XQuAD, the BEIR zip server for BEIR folders), unless offline (``HYBRID_FAST_OFFLINE=1``,
   ``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``) or ``download=False``.

When nothing is found and nothing can be downloaded, a ``FileNotFoundError`` says which files
are expected and where to put them.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

XQUAD_R_LANGUAGES: tuple[str, ...] = (
    "ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh",
)
XQUAD_LANGUAGES: tuple[str, ...] = XQUAD_R_LANGUAGES + ("ro",)

_OFFLINE_ENV = ("HYBRID_FAST_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class RemoteSource:
    """How to fetch one named dataset: ``url_for(file_name)`` gives each file's URL."""

    description: str
    url_for: Callable[[str], str] | None


KNOWN_SOURCES: dict[str, RemoteSource] = {
    "xquad-r": RemoteSource(
        description="LAReQA XQuAD-R ({lang}.json), github.com/google-research-datasets/lareqa",
        url_for=lambda f: (
            "https://raw.githubusercontent.com/google-research-datasets/lareqa/master/xquad-r/" + f
        ),
    ),
    "xquad": RemoteSource(
        description="XQuAD (xquad.{lang}.json), github.com/google-deepmind/xquad",
        url_for=lambda f: "https://raw.githubusercontent.com/google-deepmind/xquad/master/" + f,
    ),
}


def cache_root() -> Path:
    """Folder where downloads are cached: ``$HYBRID_FAST_CACHE`` or ``~/.cache/hybrid_fast``."""
    return Path(os.environ.get("HYBRID_FAST_CACHE", Path.home() / ".cache" / "hybrid_fast"))


def is_offline() -> bool:
    """True when any of ``HYBRID_FAST_OFFLINE``, ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` is 1."""
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes") for var in _OFFLINE_ENV)


def missing_files(folder: Path, files: Sequence[str]) -> list[str]:
    """The names of ``files`` (relative to ``folder``) that are not files there."""
    return [f for f in files if not (folder / f).is_file()]


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out)
    partial.replace(target)


def resolve_data_dir(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    files: Sequence[str] = (),
    download: bool | None = None,
) -> Path:
    """Return a local folder holding ``files`` for dataset ``name``.

    Args:
        name: dataset name: ``"xquad-r"``, ``"xquad"`` or ``"beir/<dataset>"`` (e.g.
            ``"beir/scifact"``), or any other name when ``path`` is given.
        path: explicit local folder. When given it is the only place looked at.
        files: file names (relative to the folder) that must exist.
        download: allow network download; ``None`` = allowed unless an offline variable is set.

    Returns:
        The folder (a ``Path``).

    Raises:
        FileNotFoundError: ``path`` is missing or lacks files; or no local copy exists and it
            cannot be downloaded (offline, unknown name or network error). The message lists the
            expected files and where to put them.
    """
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder for {name!r} not found: {folder}")
        missing = missing_files(folder, files)
        if missing:
            raise FileNotFoundError(
                f"data folder {folder} for {name!r} lacks {missing} (expected files: {list(files)})"
            )
        return folder

    candidates = []
    if os.environ.get("HYBRID_FAST_DATA"):
        candidates.append(Path(os.environ["HYBRID_FAST_DATA"]) / name)
    cached = cache_root() / "data" / name
    candidates.append(cached)
    for folder in candidates:
        if folder.is_dir() and not missing_files(folder, files):
            return folder

    allow = (not is_offline()) if download is None else download
    where = (
        f"pass --data DIR (or path=...) pointing at a folder with {list(files) or 'the dataset files'}, "
        f"or put them under $HYBRID_FAST_DATA/{name}/ or {cached}/"
    )
    if not allow:
        raise FileNotFoundError(f"no local copy of dataset {name!r} and downloads are off (offline); {where}")

    try:
        if name.startswith("beir/"):
            _download_beir(name.split("/", 1)[1], cached)
        elif name in KNOWN_SOURCES and KNOWN_SOURCES[name].url_for is not None:
            source = KNOWN_SOURCES[name]
            for file_name in missing_files(cached, files):
                _download(source.url_for(file_name), cached / file_name)
        else:
            raise FileNotFoundError(
                f"dataset {name!r} has no known download location (known: "
                f"{sorted(KNOWN_SOURCES) + ['beir/<name>']}); {where}"
            )
    except (urllib.error.URLError, OSError, zipfile.BadZipFile) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise FileNotFoundError(f"could not download dataset {name!r} ({err}); {where}") from None
    missing = missing_files(cached, files)
    if missing:
        raise FileNotFoundError(f"download of {name!r} did not provide {missing}; {where}")
    return cached


def _download_beir(dataset: str, target: Path) -> None:
    """Fetch the BEIR zip of ``dataset`` and unpack its top folder into ``target``."""
    url = f"https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{dataset}.zip"
    archive = target.with_name(target.name + ".zip")
    _download(url, archive)
    unpack_to = target.with_name(target.name + ".unpack")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpack_to)
    inner = unpack_to / dataset
    (inner if inner.is_dir() else unpack_to).replace(target)
    shutil.rmtree(unpack_to, ignore_errors=True)
    archive.unlink(missing_ok=True)
