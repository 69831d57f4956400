"""Ingestion throughput and hybrid query latency of the studio's RAG index at 1k, 10k and 100k chunks.

One knowledge base grows 1k -> 10k -> 100k chunks through the studio's own `ingest()` (chunking,
BM25 terms, Chroma writes, catalog, one BM25 rebuild per batch). Embedding 100k chunks with MiniLM
would take hours on a laptop CPU, so during these bulk ingests the embedder returns random unit
vectors; the real embedding throughput is measured separately on a sample and both are reported.
Queries then run exactly as the studio runs them: `search()` in hybrid mode with the real query
embedding, the dense Chroma query, BM25, fusion and fetching the chunks (no rerank, no generation).

    python bench/rag_scale.py                     # 1k, 10k, 100k
    python bench/rag_scale.py --sizes 1000 10000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from studio.core.rag.bm25 import BM25Index  # noqa: E402
from studio.core.rag.embeddings import get_embedder  # noqa: E402
from studio.core.rag.index import KnowledgeBases  # noqa: E402
from studio.core.rag.ingest import IngestReport, ingest  # noqa: E402
from studio.core.rag.loaders import Document, document_from_text  # noqa: E402
from studio.core.rag.params import RetrievalParams  # noqa: E402
from studio.core.rag.retrieval import search  # noqa: E402
from studio.storage.workspace import Workspace  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "scifact"
CHUNKS_PER_DOC = 50


def sentences_and_queries(seed: int) -> tuple[list[str], list[str]]:
    """Real sentences to build chunks from and real questions to ask (SciFact if present, else random words)."""
    rng = random.Random(seed)
    if (SCIFACT / "corpus.jsonl").is_file():
        sentences = []
        for line in (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
            sentences += [s.strip() + "." for s in json.loads(line)["text"].split(". ") if 5 < len(s.split()) < 40]
        queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
        return sentences, queries
    words = [f"term{i}" for i in range(20000)]
    sentences = [" ".join(rng.choices(words, k=18)) + "." for _ in range(50000)]
    return sentences, [" ".join(rng.choices(words, k=8)) for _ in range(200)]


def synthetic_documents(start: int, count: int, sentences: list[str], rng: random.Random) -> list[Document]:
    """`count` chunks' worth of documents; each paragraph is 100-180 MiniLM tokens, so exactly one chunk."""
    docs = []
    for d in range(start // CHUNKS_PER_DOC, (start + count) // CHUNKS_PER_DOC):
        paragraphs = []
        for p in range(CHUNKS_PER_DOC):
            body, words = [f"Record {d}-{p}."], 0
            while words < 70:
                body.append(rng.choice(sentences))
                words += len(body[-1].split())
            paragraphs.append(" ".join(body))
        docs.append(document_from_text(f"synthetic-{d:05d}.txt", "\n\n".join(paragraphs)))
    return docs


REBUILDS: list[float] = []


def _timed_rebuild(original):
    def rebuild(self, version):
        started = time.perf_counter()
        try:
            return original(self, version)
        finally:
            REBUILDS.append(time.perf_counter() - started)
    return rebuild


BM25Index._rebuild = _timed_rebuild(BM25Index._rebuild)  # instrumentation only: reports the rebuild's share


def random_vectors(dim: int, rng: np.random.Generator):
    def embed(texts, batch_size=32, on_batch=None):
        vectors = rng.standard_normal((len(texts), dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return embed


def bulk_ingest(kbs: KnowledgeBases, kb: str, docs: list[Document], dim: int) -> IngestReport:
    model = get_embedder()
    model.embed = random_vectors(dim, np.random.default_rng(len(docs)))  # instance attribute: only this bulk load
    try:
        *_, report = ingest(kbs, kb, docs)
    finally:
        del model.embed
    return report


def measure_embedding(sentences: list[str], rng: random.Random, n: int) -> float:
    """Real MiniLM chunks/s on `n` chunk-sized texts."""
    docs = synthetic_documents(0, CHUNKS_PER_DOC, sentences, rng)
    texts = [p for p in docs[0].text.split("\n\n")][:n]
    model = get_embedder()
    model.embed(texts[:4])
    started = time.perf_counter()
    model.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def latency(kbs: KnowledgeBases, kb: str, queries: list[str], n: int) -> dict[str, float]:
    params = RetrievalParams(mode="hybrid", top_k=5)
    for q in queries[:5]:
        search(kbs, kb, q, params)  # warm-up: BM25 index into memory, HNSW pages, torch kernels
    totals, stages = [], {}
    for q in queries[5:5 + n]:
        started = time.perf_counter()
        result = search(kbs, kb, q, params)
        totals.append((time.perf_counter() - started) * 1000)
        for name, ms in result.timings_ms.items():
            stages.setdefault(name, []).append(ms)
    totals.sort()
    out = {"p50": statistics.median(totals), "p95": totals[int(0.95 * (len(totals) - 1))], "max": totals[-1]}
    out.update({f"{name} p50": statistics.median(v) for name, v in stages.items() if name != "total"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--embed-sample", type=int, default=48, help="chunks embedded for real to measure MiniLM chunks/s")
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "studio-bench-scale")
    args = parser.parse_args(argv)

    shutil.rmtree(args.workspace, ignore_errors=True)
    kbs = KnowledgeBases(Workspace(args.workspace))
    kbs.create("scale")
    dim = get_embedder().dimension
    sentences, queries = sentences_and_queries(0)
    rng = random.Random(0)
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
    embed_rate = measure_embedding(sentences, rng, args.embed_sample)
    print(f"real MiniLM embedding: {embed_rate:.1f} chunks/s ({args.embed_sample} chunks of ~150 tokens)\n")
    print(f"{'chunks':>8} {'added':>8} {'ingest s':>9} {'bm25 s':>7} {'chunks/s*':>10} {'with MiniLM':>12} {'p50 ms':>8} "
          f"{'p95 ms':>8}  stages (p50 ms)")
    have = 0
    for size in sorted(args.sizes):
        docs = synthetic_documents(have, size - have, sentences, rng)
        REBUILDS.clear()
        started = time.perf_counter()
        report = bulk_ingest(kbs, "scale", docs, dim)
        seconds = time.perf_counter() - started
        added = sum(f.added for f in report.files)
        have = kbs.info("scale").chunks
        rate = added / seconds
        combined = 1 / (1 / rate + 1 / embed_rate)
        lat = latency(kbs, "scale", queries, args.queries)
        stages = " ".join(f"{k.split()[0]} {v:.1f}" for k, v in lat.items() if k.endswith(" p50"))
        print(f"{have:>8} {added:>8} {seconds:>9.1f} {sum(REBUILDS):>7.1f} {rate:>10.0f} {combined:>12.1f} {lat['p50']:>8.1f} "
              f"{lat['p95']:>8.1f}  {stages}", flush=True)
    print("\n* chunks/s without embedding (chunking, BM25 terms, Chroma writes, catalog, BM25 rebuild);"
          " 'with MiniLM' adds the measured real embedding cost; 'bm25 s' is the one BM25 rebuild of the batch.")
    print(f"load average at end {os.getloadavg()[0]:.1f}; target: p95 <= 100 ms at 100k chunks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
