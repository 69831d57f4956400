"""Retrieval quality of the studio's RAG index on BEIR SciFact, next to published anchors.

Indexes each SciFact abstract (title + text) as one document through the studio's own ingestion,
Chroma, BM25 and fusion code with the default embedder, then scores dense, BM25 and hybrid retrieval
(and reranked hybrid when --reranker names a cross-encoder) on the 300 test queries with ranx.

    python bench/rag_scifact.py                 # ingest once (cached in --workspace), evaluate
    python bench/rag_scifact.py --tune          # also pick fusion weights on the *train* queries

Ingestion is incremental: a re-run skips every abstract already indexed. The dataset is read from
../shared/datasets/scifact (relative to the repository) and never copied into it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.core.rag.evaluation import (chunk_rankings, documents_of, evaluate_retrieval, hybrid_rankings,  # noqa: E402
                                        load_beir, score_rankings)
from studio.core.rag.index import KnowledgeBases  # noqa: E402
from studio.core.rag.ingest import IngestReport, ingest  # noqa: E402
from studio.core.rag.params import IndexParams, RetrievalParams  # noqa: E402
from studio.core.rag.retrieval import get_reranker  # noqa: E402
from studio.storage.workspace import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "datasets" / "scifact"
# Published nDCG@10 on SciFact test: all-MiniLM-L6-v2 (sentence-transformers / MTEB), BM25 (bm25s, Lucene variant).
ANCHORS = {"dense": 0.645, "bm25": 0.687}


def build_index(kbs: KnowledgeBases, kb: str, data_dir: Path, params: IndexParams) -> None:
    data = load_beir(data_dir)
    if kb not in kbs.names():
        kbs.create(kb, params)
    docs = data.documents()
    started, last = time.perf_counter(), 0.0
    for event in ingest(kbs, kb, docs):
        if isinstance(event, IngestReport):
            print(f"ingest: {event.summary()}", flush=True)
            for failed in event.failed:
                print(f"  failed: {failed.error}")
        elif time.perf_counter() - last > 30:
            last = time.perf_counter()
            rate = event.chunks_embedded / max(last - started, 1e-9)
            print(f"  {event.files_done}/{event.files_total} documents, {event.chunks_embedded} chunks embedded "
                  f"({rate:.1f} chunks/s)", flush=True)
    info = kbs.info(kb)
    print(f"index: {info.documents} documents, {info.chunks} chunks, embedder {info.embedder}, "
          f"chunks {info.params.chunk_tokens} tokens / overlap {info.params.overlap_tokens}")


def tune(kbs: KnowledgeBases, kb: str, data_dir: Path, params: RetrievalParams) -> RetrievalParams:
    """Pick dense/BM25 weights and the RRF k on the train queries (never on the test queries)."""
    train = load_beir(data_dir, split="train", queries_file="queries_train.jsonl")
    print(f"tuning fusion on {len(train.queries)} train queries...", flush=True)
    lists = chunk_rankings(kbs, kb, train, params)
    print(f"  train dense nDCG@10 {score_rankings(train.qrels, _docs(lists['dense']))['ndcg@10']:.4f}, "
          f"bm25 {score_rankings(train.qrels, _docs(lists['bm25']))['ndcg@10']:.4f}")
    best = (-1.0, params)
    for bm25_weight, rrf_k in itertools.product((0.6, 0.8, 1.0, 1.25, 1.5, 2.0), (10, 30, 60, 100)):
        ndcg = score_rankings(train.qrels, hybrid_rankings(lists, 1.0, bm25_weight, rrf_k))["ndcg@10"]
        print(f"  dense 1.0 / bm25 {bm25_weight:<4} k={rrf_k:<3}  train nDCG@10 {ndcg:.4f}")
        if ndcg > best[0]:
            best = (ndcg, RetrievalParams(mode="hybrid", dense_weight=1.0, bm25_weight=bm25_weight, rrf_k=rrf_k))
    chosen = best[1]
    print(f"chosen on train: dense 1.0 / bm25 {chosen.bm25_weight} / k={chosen.rrf_k} (train nDCG@10 {best[0]:.4f})")
    return chosen


def _docs(per_query: dict[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    return {q: documents_of([src for _, src in ranked], 100) for q, ranked in per_query.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="BEIR SciFact folder")
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "studio-bench-scifact",
                        help="studio workspace holding the index (kept between runs)")
    parser.add_argument("--kb", default="scifact")
    parser.add_argument("--chunk-tokens", type=int, default=IndexParams().chunk_tokens)
    parser.add_argument("--dense-weight", type=float, default=1.0)
    parser.add_argument("--bm25-weight", type=float, default=1.0)
    parser.add_argument("--rrf-k", type=int, default=60)
    parser.add_argument("--tune", action="store_true", help="choose fusion weights on the train split first")
    parser.add_argument("--reranker", default="", help="cross-encoder id or folder (none ships offline)")
    args = parser.parse_args(argv)

    kbs = KnowledgeBases(Workspace(args.workspace))
    build_index(kbs, args.kb, args.data, IndexParams(chunk_tokens=args.chunk_tokens))
    params = RetrievalParams(mode="hybrid", dense_weight=args.dense_weight, bm25_weight=args.bm25_weight, rrf_k=args.rrf_k)
    if args.tune:
        params = tune(kbs, args.kb, args.data, params)
    reranker = get_reranker(args.reranker) if args.reranker else None
    test = load_beir(args.data)
    started = time.perf_counter()
    result = evaluate_retrieval(kbs, args.kb, test, params, reranker=reranker)
    print(f"\nSciFact test, {result.queries} queries ({time.perf_counter() - started:.0f} s); hybrid = RRF "
          f"dense {params.dense_weight} / bm25 {params.bm25_weight}, k={params.rrf_k}")
    print(result.table())
    print("\nnDCG@10     studio   published")
    for name, values in result.metrics.items():
        anchor = f"{ANCHORS[name]:.3f}" if name in ANCHORS else "  -  "
        print(f"{name:<10} {values['ndcg@10']:.4f}   {anchor}")
    if not reranker:
        print("reranked   unavailable (no cross-encoder configured; pass --reranker)")
    target = result.metrics["hybrid"]["ndcg@10"]
    print(f"\nhybrid nDCG@10 {target:.4f} {'>=' if target >= 0.70 else '<'} 0.70 target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
