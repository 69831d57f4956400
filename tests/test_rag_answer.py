"""Answering: context budget, prompt, citations, no-context result, streaming through the shared ModelManager."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.config import GenerationParams, LoadParams
from studio.core.generation import Chunk as TextChunk
from studio.core.generation import Completion, GenerationStats
from studio.core.models import ModelManager
from studio.core.rag import answer as answer_module
from studio.core.rag.answer import NO_CONTEXT, RagAnswer, answer, build_prompt, cite, fit_context, parse_citations
from studio.core.rag.chunking import Chunk
from studio.core.rag.index import KnowledgeBases
from studio.core.rag.ingest import ingest
from studio.core.rag.params import AnswerParams, RetrievalParams
from studio.core.rag.retrieval import RetrievedChunk, SearchResult
from studio.errors import ConfigError, GenerationError, StudioError
from studio.storage.workspace import Workspace


class WordTokenizer:
    """One token per whitespace-separated word: makes budgets easy to compute by hand."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": list(range(len(text.split())))}


def item(n: int, words: int, page: int | None = None) -> RetrievedChunk:
    text = " ".join(f"w{n}" for _ in range(words))
    chunk = Chunk(id=f"c{n}", text=text, source=f"doc{n}.pdf", file_type="pdf", heading_path=("Intro",), page=page,
                  number=0, start=0, end=len(text), content_hash="h", embedder="m")
    return RetrievedChunk(chunk=chunk, rank=n)


def test_context_budget_drops_the_lowest_ranked_chunks_whole() -> None:
    items = [item(1, 10), item(2, 10), item(3, 10), item(4, 1)]
    # Each block is "[n] (docN.pdf · Intro)" (4 words) + its text: 14 words, the last one 5 (it would fit in 33).
    blocks, dropped = fit_context(items, WordTokenizer(), budget=33)
    assert [b.number for b in blocks] == [1, 2] and [b.tokens for b in blocks] == [14, 14]
    assert [d.chunk.id for d in dropped] == ["c3", "c4"], "a smaller lower-ranked chunk never jumps the queue"
    assert blocks[1].text.endswith(items[1].chunk.text), "kept chunks are never cut"


def test_prompt_numbers_the_context_and_asks_for_citations() -> None:
    prompt = build_prompt("What is w1?", [item(1, 3, page=4), item(2, 3)], WordTokenizer(), AnswerParams(context_tokens=64))
    (message,) = prompt.messages
    assert message["role"] == "user"
    content = message["content"]
    assert content.index("[1] (doc1.pdf · page 4 · Intro)\nw1 w1 w1") < content.index("[2] (doc2.pdf · Intro)")
    assert "Question: What is w1?" in content and "[1]" in content and "I don't know" in content
    assert "only the numbered context" in content
    assert prompt.context_tokens == (7 + 3) + (4 + 3)


def test_a_budget_smaller_than_the_best_chunk_is_an_error() -> None:
    with pytest.raises(StudioError, match="The best chunk needs 104 tokens but the context budget is 64.") as info:
        build_prompt("q", [item(1, 100)], WordTokenizer(), AnswerParams(context_tokens=64))
    assert "at least 104 tokens" in info.value.fix


def test_citations_are_parsed_in_order_without_repeats() -> None:
    text = "Yes [2]. Also [1, 3] and again [2]; ranges [4-6]; not [x] or [ 12 ]."
    assert parse_citations(text) == [2, 1, 3, 4, 5, 6, 12]
    blocks, _ = fit_context([item(1, 1), item(2, 1), item(3, 1)], WordTokenizer(), 100)
    citations, unknown = cite(text, blocks)
    assert [c.number for c in citations] == [2, 1, 3] and unknown == [4, 5, 6, 12]
    assert citations[0].label == "[2] doc2.pdf · Intro"


def test_answer_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="`context_tokens` should be a number between 64 and 131072, got 10."):
        AnswerParams(context_tokens=10)


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBases:
    root = tmp_path_factory.mktemp("answer")
    (root / "warranty.txt").write_text("The warranty covers two years of repairs. Water damage is not covered.")
    (root / "reset.md").write_text("# Reset\n\nHold the reset button for ten seconds to restore factory settings.")
    kbs = KnowledgeBases(Workspace(root / "ws"))
    kbs.create("support")
    *_, report = ingest(kbs, "support", [root / "warranty.txt", root / "reset.md"])
    assert not report.failed
    return kbs


@pytest.fixture(scope="module")
def manager(tiny_model_dir: Path) -> ModelManager:
    manager = ModelManager()
    manager.load(LoadParams(model=str(tiny_model_dir)))
    return manager


def test_answer_streams_through_the_model_manager(kbs: KnowledgeBases, manager: ModelManager) -> None:
    events = list(answer(manager, kbs, "support", "How long is the warranty?", RetrievalParams(top_k=2),
                         generation=GenerationParams(max_new_tokens=8, temperature=0, seed=1)))
    assert isinstance(events[0], SearchResult) and events[0].chunks[0].chunk.source == "warranty.txt"
    final = events[-1]
    assert isinstance(final, RagAnswer) and not final.no_context
    streamed = "".join(e.text for e in events[1:-1] if isinstance(e, TextChunk))
    assert streamed == final.text == final.completion.text
    assert final.completion.stats.completion_tokens >= 1
    assert [b.item.chunk.source for b in final.prompt.blocks][0] == "warranty.txt"
    assert final.completion.stats.prompt_tokens > final.prompt.context_tokens


def test_cited_sources_are_mapped_to_the_context(kbs: KnowledgeBases, manager: ModelManager, monkeypatch) -> None:
    def fake_stream(manager, messages, params, adapter=None, cancel=None):
        assert "Context:\n[1] (warranty.txt)" in messages[0]["content"]
        yield TextChunk("Two years [1]. See also [7].")
        yield Completion("Two years [1]. See also [7].", GenerationStats(10, 8, 0.1, 0.2, "eos"))

    monkeypatch.setattr(answer_module, "stream", fake_stream)
    final = list(answer(manager, kbs, "support", "How long is the warranty?", RetrievalParams(top_k=1)))[-1]
    assert [c.label for c in final.citations] == ["[1] warranty.txt"]
    assert final.unknown_citations == [7]


def test_no_relevant_context_returns_without_generating(kbs: KnowledgeBases, manager: ModelManager, monkeypatch) -> None:
    monkeypatch.setattr(answer_module, "stream", lambda *a, **k: pytest.fail("must not generate"))
    strict = RetrievalParams(min_similarity=0.9)
    events = list(answer(manager, kbs, "support", "What is the capital of Mongolia?", strict))
    assert len(events) == 2 and events[0].empty and events[0].below_threshold > 0
    assert events[1].no_context and events[1].text == NO_CONTEXT and events[1].completion is None


def test_no_context_can_still_generate_when_configured(kbs: KnowledgeBases, manager: ModelManager) -> None:
    final = list(answer(manager, kbs, "support", "What is the capital of Mongolia?", RetrievalParams(min_similarity=0.9),
                        AnswerParams(answer_without_context=True), GenerationParams(max_new_tokens=4, temperature=0)))[-1]
    assert final.no_context and final.completion is not None and final.prompt.blocks == []
    assert "not backed by the documents" in final.prompt.messages[0]["content"]


def test_answer_without_a_loaded_model(kbs: KnowledgeBases) -> None:
    with pytest.raises(GenerationError, match="No model is loaded."):
        list(answer(ModelManager(), kbs, "support", "How long is the warranty?"))
