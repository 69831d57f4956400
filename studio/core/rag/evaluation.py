"""Retrieval evaluation on BEIR-format data (corpus.jsonl, queries.jsonl, qrels TSV), scored with ranx.

Chunks are mapped back to their documents (a document ranks where its best chunk ranks), so a
knowledge base built from a BEIR corpus, one Document per corpus entry, is scored exactly like the
published BEIR numbers: nDCG@10, Recall@10, Recall@100 and MRR@10 per retriever.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio.core.rag.index import KnowledgeBases
from studio.core.rag.loaders import Document, document_from_text
from studio.core.rag.params import RetrievalParams
from studio.core.rag.retrieval import CrossEncoderLike, fuse, search
from studio.errors import StudioError

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
Ranking = list[str]  # document ids, best first


@dataclass
class BeirDataset:
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def documents(self) -> list[Document]:
        """One Document per corpus entry (title kept apart: it prefixes every chunk's embedded text)."""
        return [document_from_text(doc_id, text, title=title) for doc_id, (title, text) in self.corpus.items()]


@dataclass
class RetrievalEvaluation:
    metrics: dict[str, dict[str, float]]  # retriever -> metric -> value
    queries: int
    rankings: dict[str, dict[str, Ranking]] = field(default_factory=dict, repr=False)

    def table(self) -> str:
        lines = ["retriever  " + "  ".join(f"{m:>10}" for m in METRICS)]
        for name, values in self.metrics.items():
            lines.append(f"{name:<10} " + "  ".join(f"{values[m]:>10.4f}" for m in METRICS))
        return "\n".join(lines)


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise StudioError(f"{path.name} line {number} is not valid JSON ({err}).", "fix or remove that line.") from None
    return rows


def qrels_file(folder: Path, split: str) -> Path:
    for candidate in (folder / f"qrels_{split}.tsv", folder / "qrels" / f"{split}.tsv"):
        if candidate.is_file():
            return candidate
    raise StudioError(f"No qrels for split {split!r} in {folder}.", f"add qrels_{split}.tsv or qrels/{split}.tsv.")


def load_beir(folder: str | Path, split: str = "test", queries_file: str = "queries.jsonl") -> BeirDataset:
    """Read a BEIR folder; only queries that have qrels are kept. Raises StudioError naming a bad file."""
    folder = Path(folder)
    corpus = load_corpus(folder)
    if not (folder / queries_file).is_file():
        raise StudioError(f"{folder} has no {queries_file}.", "point at a BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels).")
    data = load_queries(folder / queries_file, qrels_file(folder, split))
    data.corpus = corpus
    return data


def load_corpus(folder: str | Path) -> dict[str, tuple[str, str]]:
    """A BEIR folder's corpus.jsonl as id -> (title, text); all that ingesting a corpus needs."""
    path = Path(folder) / "corpus.jsonl"
    if not path.is_file():
        raise StudioError(f"{Path(folder)} has no corpus.jsonl.", "point at a BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels).")
    return {str(r["_id"]): (r.get("title", "") or "", r.get("text", "") or "") for r in _jsonl(path)}


def load_queries(queries: str | Path, qrels: str | Path) -> BeirDataset:
    """Queries (BEIR queries.jsonl: _id, text) and their judgements (qrels TSV: query-id, corpus-id, score).

    The corpus stays empty: this is for scoring a knowledge base that already holds the documents,
    whose names are the qrels' corpus ids. Only queries with a positive judgement are kept.
    """
    queries, qrels = Path(queries), Path(qrels)
    for path in (queries, qrels):
        if not path.is_file():
            raise StudioError(f"{path} does not exist.", "give the path of a BEIR queries.jsonl and a qrels .tsv file.")
    judged = read_qrels(qrels)
    rows = _jsonl(queries)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "_id" not in row or not isinstance(row.get("text"), str):
            raise StudioError(f"{queries.name} entry {number} should be an object with \"_id\" and \"text\".",
                              'write one {"_id": "q1", "text": "the question"} per line.')
    found = {str(r["_id"]): r["text"] for r in rows if str(r["_id"]) in judged}
    if not found:
        raise StudioError(f"None of the queries in {queries.name} has a judgement in {qrels.name}.",
                          "check that the qrels' query-id column uses the queries' _id values.")
    return BeirDataset({}, found, {q: d for q, d in judged.items() if q in found})


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query-id -> corpus-id -> relevance (> 0 only) from a TSV with an optional header line."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split("\t")
        if number == 1 and parts[0] == "query-id" or not line.strip():
            continue
        if len(parts) < 3 or not parts[2].strip().lstrip("-").isdigit():
            raise StudioError(f"{path.name} line {number} should be query-id, corpus-id, score separated by tabs.",
                              "fix that line.")
        if int(parts[2]) > 0:
            qrels.setdefault(parts[0].strip(), {})[parts[1].strip()] = int(parts[2])
    return qrels


def documents_of(chunk_sources: list[str], depth: int) -> Ranking:
    """Chunk sources best first -> distinct documents best first (a document ranks at its best chunk)."""
    seen: dict[str, None] = {}
    for source in chunk_sources:
        seen.setdefault(source, None)
        if len(seen) == depth:
            break
    return list(seen)


def score_rankings(qrels: dict[str, dict[str, int]], rankings: dict[str, Ranking]) -> dict[str, float]:
    """ranx metrics (METRICS) of one retriever's document rankings against `qrels`."""
    from ranx import Qrels, Run, evaluate

    run = {q: {d: 1.0 / rank for rank, d in enumerate(docs, start=1)} for q, docs in rankings.items() if docs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter from ranx
        values = evaluate(Qrels.from_dict(qrels), Run.from_dict(run), list(METRICS), make_comparable=True)
    return {m: float(values[m]) for m in METRICS}


ChunkList = list[tuple[str, str]]  # (chunk id, document id), best first


def chunk_rankings(kbs: KnowledgeBases, kb: str, data: BeirDataset, params: RetrievalParams, depth: int = 100,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, ChunkList]]:
    """Dense and BM25 chunk rankings per query, through `search()`, deep enough for `depth` documents."""
    chunk_depth = min(3 * depth, 1000)
    base = replace(params, top_k=chunk_depth, candidates=chunk_depth, reranker="", min_similarity=0.0)
    lists: dict[str, dict[str, ChunkList]] = {"dense": {}, "bm25": {}}
    for done, (qid, text) in enumerate(data.queries.items(), start=1):
        for mode in lists:
            result = search(kbs, kb, text, replace(base, mode=mode))
            lists[mode][qid] = [(r.chunk.id, r.chunk.source) for r in result.chunks]
        if progress:
            progress(done, len(data.queries))
    return lists


def hybrid_rankings(lists: dict[str, dict[str, ChunkList]], dense_weight: float, bm25_weight: float,
                    rrf_k: int, depth: int = 100) -> dict[str, Ranking]:
    """Document rankings from fusing each query's dense and BM25 chunk rankings with `fuse()`, as hybrid search does."""
    out = {}
    for qid in lists["dense"]:
        pairs = {mode: lists[mode].get(qid, []) for mode in ("dense", "bm25")}
        source = {cid: src for ranked in pairs.values() for cid, src in ranked}
        fused = fuse({m: [cid for cid, _ in ranked] for m, ranked in pairs.items()},
                     {"dense": dense_weight, "bm25": bm25_weight}, rrf_k)
        out[qid] = documents_of([source[cid] for cid, _ in fused], depth)
    return out


def evaluate_retrieval(kbs: KnowledgeBases, kb: str, data: BeirDataset, params: RetrievalParams | None = None,
                       reranker: CrossEncoderLike | None = None, depth: int = 100,
                       progress: Callable[[int, int], None] | None = None) -> RetrievalEvaluation:
    """nDCG@10, Recall@10/100 and MRR@10 of dense, BM25, hybrid (and reranked hybrid when a reranker is given).

    Dense and BM25 go through `search()`; hybrid fuses exactly those two chunk rankings with the same
    `fuse()` that hybrid search uses, so each query is embedded once.
    """
    params = params or RetrievalParams()
    lists = chunk_rankings(kbs, kb, data, params, depth, progress)
    rankings = {mode: {q: documents_of([src for _, src in ranked], depth) for q, ranked in per_query.items()}
                for mode, per_query in lists.items()}
    rankings["hybrid"] = hybrid_rankings(lists, params.dense_weight, params.bm25_weight, params.rrf_k, depth)
    if reranker is not None or params.reranker:
        rankings["reranked"] = {}
        for qid, text in data.queries.items():
            result = search(kbs, kb, text, replace(params, mode="hybrid", top_k=params.rerank_candidates), reranker=reranker)
            top = documents_of([r.chunk.source for r in result.chunks], depth)
            rankings["reranked"][qid] = top + [d for d in rankings["hybrid"][qid] if d not in top][:depth - len(top)]
    metrics = {name: score_rankings(data.qrels, runs) for name, runs in rankings.items()}
    return RetrievalEvaluation(metrics, len(data.queries), rankings)
