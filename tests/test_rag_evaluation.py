"""Retrieval evaluation: BEIR loading, ranx metrics on a hand-checked case, dense/BM25/hybrid/reranked runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from studio.core.rag.evaluation import documents_of, evaluate_retrieval, load_beir, score_rankings
from studio.core.rag.index import KnowledgeBases
from studio.core.rag.ingest import ingest
from studio.errors import StudioError
from studio.storage.workspace import Workspace


# ranx compiles its numba kernels (typed dicts) in every new process: ~10-40 s, hence slow.
@pytest.mark.slow
def test_ranx_metrics_match_a_hand_computed_case() -> None:
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 1}, "q3": {"d9": 1}}
    rankings = {"q1": ["d1", "d2", "d3"], "q2": ["d1", "d2"], "q3": ["d1"]}
    q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    q2 = (1 / math.log2(3)) / 1
    metrics = score_rankings(qrels, rankings)
    assert metrics["ndcg@10"] == pytest.approx((q1 + q2 + 0) / 3)
    assert metrics["recall@10"] == pytest.approx((1 + 1 + 0) / 3)
    assert metrics["recall@100"] == pytest.approx(2 / 3)
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_documents_rank_at_their_best_chunk() -> None:
    assert documents_of(["a", "a", "b", "c", "b"], depth=10) == ["a", "b", "c"]
    assert documents_of(["a", "a", "b", "c", "b"], depth=2) == ["a", "b"]


def write_beir(folder: Path, layout: str = "flat") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": "w", "title": "Warranty", "text": "The warranty covers two years of repairs."},
              {"_id": "r", "title": "Reset", "text": "Hold the reset button for ten seconds."},
              {"_id": "b", "title": "Billing", "text": "Invoices are sent on the first day of each month."},
              {"_id": "p", "title": "Pets", "text": "Cats sleep most of the day and dogs like walks."}]
    queries = [{"_id": "1", "text": "how long does the warranty last"}, {"_id": "2", "text": "when are invoices sent"},
               {"_id": "3", "text": "a query without judgements"}]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n")
    qrels = "query-id\tcorpus-id\tscore\n1\tw\t1\n2\tb\t1\n2\tp\t0\n"
    path = folder / "qrels_test.tsv" if layout == "flat" else folder / "qrels" / "test.tsv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(qrels)
    return folder


@pytest.mark.parametrize("layout", ["flat", "beir"])
def test_load_beir(tmp_path: Path, layout: str) -> None:
    data = load_beir(write_beir(tmp_path / layout, layout))
    assert set(data.corpus) == {"w", "r", "b", "p"} and data.corpus["w"][0] == "Warranty"
    assert data.queries == {"1": "how long does the warranty last", "2": "when are invoices sent"}
    assert data.qrels == {"1": {"w": 1}, "2": {"b": 1}}, "zero-score judgements and unjudged queries are dropped"
    docs = data.documents()
    assert docs[0].name == "w" and docs[0].title == "Warranty"


def test_bad_beir_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(StudioError, match="has no corpus.jsonl"):
        load_beir(tmp_path)
    folder = write_beir(tmp_path / "d")
    (folder / "qrels_test.tsv").write_text("query-id\tcorpus-id\tscore\n1 w 1\n")
    with pytest.raises(StudioError, match="qrels_test.tsv line 2 should be query-id, corpus-id, score separated by tabs."):
        load_beir(folder)
    (folder / "corpus.jsonl").write_text('{"_id": "w"\n')
    with pytest.raises(StudioError, match="corpus.jsonl line 1 is not valid JSON"):
        load_beir(folder)
    with pytest.raises(StudioError, match="No qrels for split 'dev'"):
        load_beir(write_beir(tmp_path / "e"), split="dev")


class Identity:
    def predict(self, pairs, **kwargs):
        return [float(len(pairs) - i) for i in range(len(pairs))]


@pytest.mark.slow
def test_evaluate_every_retriever_on_a_tiny_beir_set(tmp_path: Path) -> None:
    data = load_beir(write_beir(tmp_path / "beir"))
    kbs = KnowledgeBases(Workspace(tmp_path / "ws"))
    kbs.create("tiny-beir")
    *_, report = ingest(kbs, "tiny-beir", data.documents())
    assert not report.failed and report.chunks_embedded == 4
    result = evaluate_retrieval(kbs, "tiny-beir", data, reranker=Identity(), depth=10)
    assert set(result.metrics) == {"dense", "bm25", "hybrid", "reranked"} and result.queries == 2
    for name in ("dense", "bm25", "hybrid", "reranked"):
        assert result.metrics[name]["ndcg@10"] == pytest.approx(1.0), name
        assert result.rankings[name]["1"][0] == "w"
    assert result.rankings["bm25"]["2"] == ["b"], "BM25 only ranks documents that share a term"
    assert "ndcg@10" in result.table() and "reranked" in result.table()


def test_a_beir_corpus_ingests_without_queries_or_qrels(tmp_path: Path) -> None:
    from studio.core.rag.service import RagService

    folder = tmp_path / "corpus-only"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": "w", "title": "Warranty", "text": "Two years of repairs."}) + "\n")
    rag = RagService(Workspace(tmp_path / "ws"))
    rag.create("beir")
    *_, report = list(rag.ingest_beir("beir", folder))
    assert report.summary().startswith("1 added") and [d.name for d in rag.documents("beir")] == ["w"]
