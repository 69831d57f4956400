"""Settings of the RAG pipeline: one source for defaults, help text, ranges and validation.

`IndexParams` is fixed when a knowledge base is created and recorded in its collection metadata;
`RetrievalParams` and `AnswerParams` can change on every question.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from studio.config import check_choice, check_range, param_field
from studio.errors import ConfigError

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
RetrievalMode = Literal["dense", "bm25", "hybrid"]


@dataclass
class IndexParams:
    """How a knowledge base turns files into chunks, vectors and BM25 terms (fixed per knowledge base)."""

    embedder: str = param_field(DEFAULT_EMBEDDER, "Sentence-transformers model id or local folder that embeds the chunks. "
                           "The default ships with the studio and works offline.")
    chunk_tokens: int = param_field(200, "Target chunk size in the embedder's tokens. MiniLM reads at most 256 word pieces, "
                               "so chunks stay below that; smaller chunks give sharper citations.", min=32, max=2048, step=8)
    overlap_tokens: int = param_field(32, "Tokens of trailing sentences repeated at the start of the next chunk, "
                                 "so a fact split across a boundary is still found.", min=0, max=512, step=8)
    max_file_mb: float = param_field(50.0, "Files larger than this are refused before they are read.", min=1.0, max=2048.0, step=1.0)
    bm25_k1: float = param_field(1.2, "BM25 term-frequency saturation (higher = repeated words count more).", min=0.1, max=3.0, step=0.05)
    bm25_b: float = param_field(0.75, "BM25 length normalisation (0 = none, 1 = full).", min=0.0, max=1.0, step=0.05)
    stemming: bool = param_field(True, "Reduce words to their English stem for BM25 (retrieve ~ retrieval ~ retrieved).")

    def __post_init__(self) -> None:
        self.embedder = str(self.embedder or "").strip()
        if not self.embedder:
            raise ConfigError("No embedding model given.", f"leave the default ({DEFAULT_EMBEDDER}) or give a "
                              "sentence-transformers id or folder.")
        for name in ("chunk_tokens", "overlap_tokens", "max_file_mb", "bm25_k1", "bm25_b"):
            check_range(IndexParams, self, name)
        self.chunk_tokens, self.overlap_tokens = int(self.chunk_tokens), int(self.overlap_tokens)
        if self.overlap_tokens >= self.chunk_tokens:
            raise ConfigError(f"`overlap_tokens` ({self.overlap_tokens}) should be smaller than `chunk_tokens` "
                              f"({self.chunk_tokens}).", "lower the overlap or raise the chunk size.")

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    def to_metadata(self) -> dict[str, Any]:
        """Flat, Chroma-storable record of these settings (prefixed so they never clash)."""
        return {f"studio_{k}": v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> IndexParams:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k.removeprefix("studio_"): v for k, v in meta.items() if k.startswith("studio_")}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class RetrievalParams:
    """What one search does: which retrievers, how many results, how they are fused and filtered."""

    mode: str = param_field("hybrid", "dense = embeddings only; bm25 = keywords only; hybrid = both, fused by reciprocal rank.")
    top_k: int = param_field(5, "How many chunks the search returns (and the prompt may use).", min=1, max=1000, step=1)
    candidates: int = param_field(50, "How many chunks each retriever proposes before fusion and reranking.", min=1, max=1000, step=1)
    dense_weight: float = param_field(1.0, "Weight of the dense ranking in reciprocal rank fusion.", min=0.0, max=5.0, step=0.1)
    bm25_weight: float = param_field(1.0, "Weight of the BM25 ranking in reciprocal rank fusion.", min=0.0, max=5.0, step=0.1)
    rrf_k: int = param_field(60, "RRF constant k: score = sum of weight / (k + rank). Larger k flattens the rank differences.",
                        min=1, max=1000, step=1)
    reranker: str = param_field("", "Cross-encoder (sentence-transformers id or folder) that re-scores the fused candidates; "
                           "empty = no reranking.")
    rerank_candidates: int = param_field(20, "How many fused candidates the cross-encoder re-scores.", min=1, max=200, step=1)
    min_similarity: float = param_field(0.0, "Relevance threshold: chunks whose cosine similarity to the question is below it "
                                   "are dropped (0 = keep all).", min=0.0, max=1.0, step=0.01)
    documents: list[str] = param_field([], "Only search these documents (file names); empty = all.")
    file_types: list[str] = param_field([], "Only search these file types (pdf, docx, md, html, txt); empty = all.")

    def __post_init__(self) -> None:
        check_choice(self, "mode", get_args(RetrievalMode))
        for name in ("top_k", "candidates", "dense_weight", "bm25_weight", "rrf_k", "rerank_candidates", "min_similarity"):
            check_range(RetrievalParams, self, name)
        self.top_k, self.candidates, self.rrf_k = int(self.top_k), int(self.candidates), int(self.rrf_k)
        self.rerank_candidates = int(self.rerank_candidates)
        if self.mode == "hybrid" and self.dense_weight == 0 and self.bm25_weight == 0:
            raise ConfigError("Both fusion weights are 0, so hybrid search would rank nothing.",
                              "give the dense or the BM25 ranking a weight above 0.")
        self.reranker = str(self.reranker or "").strip()
        self.documents = [str(d) for d in self.documents]
        self.file_types = [str(t).lower().lstrip(".") for t in self.file_types]


@dataclass
class AnswerParams:
    """How retrieved chunks become a prompt."""

    context_tokens: int = param_field(1500, "Budget for the context chunks, in the generating model's tokens. "
                                 "Lowest-ranked chunks are dropped whole to fit; a chunk is never cut.",
                                 min=64, max=131072, step=64)
    answer_without_context: bool = param_field(False, "When no chunk passes the relevance threshold: off = reply "
                                          "'no relevant context found' without generating; on = let the model answer anyway.")

    def __post_init__(self) -> None:
        check_range(AnswerParams, self, "context_tokens")
        self.context_tokens = int(self.context_tokens)
