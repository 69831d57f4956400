"""BM25 keyword search through bm25s, persisted in the workspace and never rebuilt per query.

Terms are computed once per chunk at ingestion (lower-cased words, English stop words removed,
Snowball-stemmed with PyStemmer when it is installed) and kept in the knowledge base's catalog.
The bm25s index is rebuilt from those terms only when the catalog has changed since it was built
(its version differs), saved next to the catalog, and then held in memory: a query only
tokenises the question and adds up precomputed posting scores.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.rag.catalog import Catalog

_WORD = re.compile(r"(?u)\b\w\w+\b")
_memory: dict[Path, _Loaded] = {}
_memory_lock = threading.Lock()
_build_locks: dict[Path, threading.Lock] = {}  # one builder per folder, however many BM25Index objects point at it


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN  # lazy: importing bm25s pulls in scipy and numba

    return frozenset(STOPWORDS_EN)


@functools.cache
def _stemmer() -> Any:
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # PyStemmer is optional: unstemmed BM25 still works, a little worse
        return None


def tokenize(text: str, stemming: bool = True) -> list[str]:
    """BM25 terms of `text`: lower-case words of 2+ characters, no stop words, stemmed if asked and available."""
    stop = _stopwords()
    words = [w for w in _WORD.findall(text.lower()) if w not in stop]
    stemmer = _stemmer() if stemming else None
    return stemmer.stemWords(words) if stemmer is not None else words


@dataclass
class _Loaded:
    version: str  # Catalog.version it was built from
    data: np.ndarray  # bm25s CSC matrix (tokens x chunks) of precomputed term scores
    indices: np.ndarray
    indptr: np.ndarray
    vocab: dict[str, int]
    ids: list[str]
    sources: list[str]  # distinct source names; source_codes[i] indexes it for chunk i
    source_codes: np.ndarray
    file_types: list[str]
    type_codes: np.ndarray

    def mask(self, sources: list[str] | None, file_types: list[str] | None) -> np.ndarray | None:
        """True for chunks that pass the filters (None when there are no filters)."""
        keep = None
        for wanted, names, codes in ((sources, self.sources, self.source_codes), (file_types, self.file_types, self.type_codes)):
            if wanted:
                allowed = [i for i, name in enumerate(names) if name in set(wanted)]
                part = np.isin(codes, allowed)
                keep = part if keep is None else keep & part
        return keep


def build_index(rows: list[tuple[str, str, str, str]], k1: float, b: float) -> tuple[Any, dict[str, int]]:
    """A bm25s index over catalog rows (id, source, file_type, tokens). The one expensive step."""
    import bm25s

    vocab: dict[str, int] = {}
    corpus = [[vocab.setdefault(t, len(vocab)) for t in tokens.split()] for _, _, _, tokens in rows]
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index((corpus, vocab), show_progress=False)
    return retriever, retriever.vocab_dict


class BM25Index:
    """The BM25 side of one knowledge base: folder on disk + the catalog it is built from."""

    def __init__(self, catalog: Catalog, folder: Path, k1: float = 1.2, b: float = 0.75, stemming: bool = True) -> None:
        self.catalog, self.folder = catalog, folder
        self.k1, self.b, self.stemming = k1, b, stemming
        with _memory_lock:
            self._lock = _build_locks.setdefault(folder, threading.Lock())

    def terms(self, text: str) -> str:
        return " ".join(tokenize(text, self.stemming))

    # Building ------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def refresh(self) -> _Loaded:
        """The index for the catalog's current version: from memory, else disk, else rebuilt once."""
        version = self.catalog.version
        with _memory_lock:
            cached = _memory.get(self.folder)
        if cached is not None and cached.version == version:
            return cached
        with self._lock:
            with _memory_lock:
                cached = _memory.get(self.folder)
            if cached is not None and cached.version == version:  # built while we waited for the lock
                return cached
            state = self._state()
            if state.get("version") == version and (self.folder / state.get("dir", "-")).is_dir():
                loaded = _read(self.folder / state["dir"], version)
            else:
                loaded = self._rebuild(version)
            with _memory_lock:
                _memory[self.folder] = loaded
        return loaded

    def _rebuild(self, version: str) -> _Loaded:
        rows = self.catalog.rows()
        target = self.folder / f"index-{version.replace(':', '-')}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if rows:
            retriever, vocab = build_index(rows, self.k1, self.b)
            for name in ("data", "indices", "indptr"):
                np.save(target / f"{name}.npy", retriever.scores[name])
        else:
            vocab = {}
            for name, dtype in (("data", np.float32), ("indices", np.int32), ("indptr", np.int32)):
                np.save(target / f"{name}.npy", np.zeros(1 if name == "indptr" else 0, dtype=dtype))
        (target / "rows.json").write_text(json.dumps({"vocab": vocab, "ids": [r[0] for r in rows],
                                                      "sources": [r[1] for r in rows],
                                                      "file_types": [r[2] for r in rows]}), encoding="utf-8")
        (self.folder / "state.json").write_text(json.dumps({"version": version, "dir": target.name}), encoding="utf-8")
        for old in self.folder.glob("index-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return _read(target, version)

    # Searching -------------------------------------------------------------------------------------
    def search(self, query: str, k: int, sources: list[str] | None = None,
               file_types: list[str] | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score) for `query`, best first; only chunks sharing a term score."""
        index = self.refresh()
        if not index.ids:
            return []
        term_ids = sorted({index.vocab[t] for t in tokenize(query, self.stemming) if t in index.vocab})
        if not term_ids:
            return []
        starts, ends = index.indptr[term_ids], index.indptr[np.asarray(term_ids) + 1]
        postings = np.concatenate([index.indices[s:e] for s, e in zip(starts, ends)])
        weights = np.concatenate([index.data[s:e] for s, e in zip(starts, ends)])
        scores = np.bincount(postings, weights=weights, minlength=len(index.ids)).astype(np.float32)
        keep = index.mask(sources, file_types)
        if keep is not None:
            scores[~keep] = 0.0
        k = min(k, int(np.count_nonzero(scores)))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # score descending, ties by position: deterministic
        return [(index.ids[i], float(scores[i])) for i in top]


def forget(folder: Path) -> None:
    """Drop the in-memory copy of the index in `folder` (before it is deleted or replaced)."""
    with _memory_lock:
        _memory.pop(folder, None)


def _read(folder: Path, version: str) -> _Loaded:
    rows = json.loads((folder / "rows.json").read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"{name}.npy") for name in ("data", "indices", "indptr")}
    sources, source_codes = np.unique(np.asarray(rows["sources"], dtype=str), return_inverse=True)
    types, type_codes = np.unique(np.asarray(rows["file_types"], dtype=str), return_inverse=True)
    return _Loaded(version=version, vocab=rows["vocab"], ids=rows["ids"], sources=sources.tolist(),
                   source_codes=source_codes, file_types=types.tolist(), type_codes=type_codes, **arrays)
