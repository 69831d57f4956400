"""Search a knowledge base: dense (Chroma), BM25, hybrid by reciprocal rank fusion, optional reranking.

Every returned chunk carries each retriever's score and rank (None where that retriever did not
propose it) and its cosine similarity to the question, which the relevance threshold applies to
whichever retrievers found it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from studio.core.rag.chunking import Chunk
from studio.core.rag.index import KnowledgeBases, OpenKnowledgeBase
from studio.core.rag.params import RetrievalParams
from studio.errors import StudioError

RERANK_OFF = "unavailable: no cross-encoder configured"
_rerankers: dict[str, Any] = {}
_rerankers_lock = threading.Lock()


class CrossEncoderLike(Protocol):
    def predict(self, pairs: list[tuple[str, str]], **kwargs: Any) -> Sequence[float]: ...


@dataclass
class RetrievedChunk:
    chunk: Chunk
    rank: int = 0  # final position, 1-based
    similarity: float | None = None  # cosine similarity of chunk and question
    dense_score: float | None = None
    dense_rank: int | None = None
    bm25_score: float | None = None
    bm25_rank: int | None = None
    fused_score: float | None = None
    fused_rank: int | None = None
    rerank_score: float | None = None
    rerank_rank: int | None = None


@dataclass
class SearchResult:
    query: str
    knowledge_base: str
    params: RetrievalParams
    chunks: list[RetrievedChunk]
    below_threshold: int = 0  # candidates dropped by min_similarity
    reranker: str = RERANK_OFF
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.chunks


def fuse(rankings: dict[str, list[str]], weights: dict[str, float], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings r of weights[r] / (k + rank_r(d)), rank from 1.

    Returns (id, score) best first; ties keep the order in which ids were first seen.
    """
    scores: dict[str, float] = {}
    for name, ids in rankings.items():
        weight = weights.get(name, 1.0)
        for rank, doc_id in enumerate(ids, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank)
    order = {doc_id: i for i, doc_id in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def chroma_where(documents: list[str], file_types: list[str]) -> dict[str, Any] | None:
    clauses = [{key: {"$in": values}} for key, values in (("source", documents), ("file_type", file_types)) if values]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def get_reranker(name: str) -> Any:
    """A sentence-transformers CrossEncoder (id or folder), loaded once; StudioError if it cannot load."""
    with _rerankers_lock:
        if name not in _rerankers:
            from sentence_transformers import CrossEncoder

            folder = Path(name).expanduser()
            try:
                _rerankers[name] = CrossEncoder(str(folder) if folder.is_dir() else name, device="cpu")
            except Exception as err:  # noqa: BLE001  (hub, OS and config errors all mean "cannot use this model")
                raise StudioError(f"Cross-encoder {name!r} could not be loaded ({type(err).__name__}: {err}).",
                                  "give a cross-encoder folder on disk or a cached hub id, or leave the reranker "
                                  "empty to search without reranking.") from None
        return _rerankers[name]


def search(kbs: KnowledgeBases, kb: str, query: str, params: RetrievalParams | None = None,
           embedder: str | None = None, reranker: CrossEncoderLike | None = None) -> SearchResult:
    """The top chunks of `kb` for `query`. `reranker` overrides `params.reranker` (tests inject one).

    Raises StudioError for an empty question, an unknown knowledge base, an embedder other than the
    knowledge base's, or a reranker that cannot be loaded.
    """
    params = params or RetrievalParams()
    if not query or not query.strip():
        raise StudioError("The question is empty.", "type a question to search for.")
    started, timings = time.perf_counter(), {}
    opened = _timed(timings, "open", lambda: kbs.open(kb, embedder))
    collection = opened.collection
    rankings, found, qvec = _candidates(opened, query, params, timings)
    pool = _order(rankings, params, found, timings)
    reranking = reranker is not None or bool(params.reranker)
    pool = pool[:max(params.top_k, params.rerank_candidates if reranking else 0)]
    _timed(timings, "fetch", lambda: _fill(collection, {i: found[i] for i in pool}, qvec))
    pool = [i for i in pool if found[i].chunk is not None]  # a chunk deleted since BM25 was built
    kept = [found[i] for i in pool if params.min_similarity <= 0 or (found[i].similarity or 0.0) >= params.min_similarity]
    status = RERANK_OFF
    if reranking and kept:
        model_ = reranker if reranker is not None else get_reranker(params.reranker)
        status = params.reranker or type(model_).__name__
        kept = _timed(timings, "rerank", lambda: _rerank(model_, query, kept))
    chunks = kept[:params.top_k]
    for rank, item in enumerate(chunks, start=1):
        item.rank = rank
    timings["total"] = (time.perf_counter() - started) * 1000
    return SearchResult(query, kb, params, chunks, below_threshold=len(pool) - len(kept), reranker=status,
                        timings_ms=timings)


def _candidates(opened: OpenKnowledgeBase, query: str, params: RetrievalParams, timings: dict[str, float],
                ) -> tuple[dict[str, list[str]], dict[str, RetrievedChunk], np.ndarray | None]:
    """Each retriever's ranking (chunk ids), what is known of every proposed chunk, and the query vector."""
    found: dict[str, RetrievedChunk] = {}
    rankings: dict[str, list[str]] = {}
    qvec = None
    if params.mode != "bm25" or params.min_similarity > 0:
        qvec = _timed(timings, "embed", lambda: opened.embedder.embed_query(query))
    if params.mode in ("dense", "hybrid"):
        rankings["dense"] = _timed(timings, "dense", lambda: _dense(opened.collection, opened.catalog.count(), qvec,
                                                                     params, found))
    if params.mode in ("bm25", "hybrid"):
        hits = _timed(timings, "bm25", lambda: opened.bm25.search(query, params.candidates, params.documents,
                                                                  params.file_types))
        rankings["bm25"] = [chunk_id for chunk_id, _ in hits]
        for rank, (chunk_id, score) in enumerate(hits, start=1):
            entry = found.setdefault(chunk_id, RetrievedChunk(chunk=None))  # type: ignore[arg-type]  (filled later)
            entry.bm25_score, entry.bm25_rank = score, rank
    return rankings, found, qvec


def _timed(timings: dict[str, float], name: str, fn: Any) -> Any:
    start = time.perf_counter()
    result = fn()
    timings[name] = (time.perf_counter() - start) * 1000
    return result


def _dense(collection: Any, count: int, qvec: np.ndarray, params: RetrievalParams,
           found: dict[str, RetrievedChunk]) -> list[str]:
    if count == 0:
        return []
    result = collection.query(query_embeddings=[qvec], n_results=min(params.candidates, count),
                              where=chroma_where(params.documents, params.file_types),
                              include=["documents", "metadatas", "distances"])
    ids = result["ids"][0]
    for rank, chunk_id in enumerate(ids, start=1):
        similarity = 1.0 - float(result["distances"][0][rank - 1])  # cosine space: distance = 1 - cos
        chunk = Chunk.from_metadata(chunk_id, result["documents"][0][rank - 1], result["metadatas"][0][rank - 1] or {})
        found[chunk_id] = RetrievedChunk(chunk=chunk, similarity=similarity, dense_score=similarity, dense_rank=rank)
    return ids


def _order(rankings: dict[str, list[str]], params: RetrievalParams, found: dict[str, RetrievedChunk],
           timings: dict[str, float]) -> list[str]:
    if params.mode != "hybrid":
        return rankings[params.mode]
    start = time.perf_counter()
    fused = fuse(rankings, {"dense": params.dense_weight, "bm25": params.bm25_weight}, params.rrf_k)
    for rank, (chunk_id, score) in enumerate(fused, start=1):
        found[chunk_id].fused_score, found[chunk_id].fused_rank = score, rank
    timings["fuse"] = (time.perf_counter() - start) * 1000
    return [chunk_id for chunk_id, _ in fused]


def _fill(collection: Any, items: dict[str, RetrievedChunk], qvec: np.ndarray | None) -> None:
    """Load text and metadata of chunks only BM25 proposed, and their similarity to the question."""
    missing = [chunk_id for chunk_id, item in items.items() if item.chunk is None]
    if not missing:
        return
    got = collection.get(ids=missing, include=["documents", "metadatas"] + (["embeddings"] if qvec is not None else []))
    for i, chunk_id in enumerate(got["ids"]):
        item = items[chunk_id]
        item.chunk = Chunk.from_metadata(chunk_id, got["documents"][i], got["metadatas"][i] or {})
        if qvec is not None:  # stored vectors are unit length, so the dot product is the cosine
            item.similarity = float(np.dot(np.asarray(got["embeddings"][i], dtype=np.float32), qvec))


def _rerank(model: CrossEncoderLike, query: str, items: list[RetrievedChunk]) -> list[RetrievedChunk]:
    scores = model.predict([(query, item.chunk.embedding_text()) for item in items])
    for item, score in zip(items, scores):
        item.rerank_score = float(score)
    ordered = sorted(items, key=lambda item: -(item.rerank_score or 0.0))
    for rank, item in enumerate(ordered, start=1):
        item.rerank_rank = rank
    return ordered
