"""Chunking: sizes in the embedder's tokens, exact character spans, structure carried, ids from content."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.rag.chunking import chunk_document
from studio.core.rag.embeddings import get_embedder
from studio.core.rag.loaders import document_from_text, load_document
from studio.core.rag.params import IndexParams
from studio.errors import ConfigError
from test_rag_loaders import make_pdf

SENTENCES = " ".join(f"Sentence number {i} explains how the router handles packet {i * 7}." for i in range(60))


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def tokens(embedder, text: str) -> int:
    return len(embedder.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_chunks_fit_the_target_and_point_back_into_the_document(tmp_path: Path, embedder) -> None:
    (tmp_path / "guide.md").write_text(f"# Guide\n\nShort intro.\n\n## Details\n\n{SENTENCES}\n\n## End\n\nBye.\n")
    doc = load_document(tmp_path / "guide.md")
    params = IndexParams(chunk_tokens=64, overlap_tokens=16)
    chunks = chunk_document(doc, embedder.tokenizer, params, embedder.name)
    assert len(chunks) > 5
    for chunk in chunks:
        assert doc.text[chunk.start:chunk.end] == chunk.text
        assert tokens(embedder, chunk.embedding_text()) <= 64, "title/heading prefix included in the budget"
        assert chunk.embedder == embedder.name and chunk.file_type == "md" and chunk.source == "guide.md"
    assert [c.number for c in chunks] == list(range(len(chunks)))
    assert chunks[0].heading_path == ("Guide",) and chunks[-1].heading_path == ("Guide", "End")
    details = [c for c in chunks if c.heading_path == ("Guide", "Details")]
    assert details[0].embedding_text().startswith("Guide > Details\n")
    overlaps = [a.end > b.start for a, b in zip(details, details[1:])]
    assert all(overlaps), "consecutive chunks of one section share trailing sentences"
    assert not any(c.text.startswith("number") for c in details), "chunks start at a sentence boundary"


def test_chunks_never_cross_sections_or_pages(tmp_path: Path, embedder) -> None:
    doc = load_document(make_pdf(tmp_path / "m.pdf", ["Page one.\nMore on one.", "Page two.", "Page three."]))
    chunks = chunk_document(doc, embedder.tokenizer, IndexParams(), embedder.name)
    assert [(c.page, c.text.split()[0]) for c in chunks] == [(1, "Page"), (2, "Page"), (3, "Page")]
    assert [c.page for c in chunks] == [1, 2, 3]


def test_a_sentence_longer_than_a_chunk_is_cut_between_tokens(embedder) -> None:
    doc = document_from_text("long.txt", "word " * 500)
    chunks = chunk_document(doc, embedder.tokenizer, IndexParams(chunk_tokens=100, overlap_tokens=0), embedder.name)
    assert len(chunks) == 5
    assert all(tokens(embedder, c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == "word" * 500


def test_ids_depend_on_content_so_edits_only_change_what_changed(embedder) -> None:
    params = IndexParams(chunk_tokens=32, overlap_tokens=0)
    paragraphs = [f"Paragraph {i} is about topic {i}." for i in range(6)]
    before = chunk_document(document_from_text("a.txt", "\n\n".join(paragraphs)), embedder.tokenizer, params, "m")
    again = chunk_document(document_from_text("a.txt", "\n\n".join(paragraphs)), embedder.tokenizer, params, "m")
    assert [c.id for c in before] == [c.id for c in again]
    paragraphs[0] = "A brand new first paragraph about something else entirely."
    after = chunk_document(document_from_text("a.txt", "\n\n".join(paragraphs)), embedder.tokenizer, params, "m")
    assert len(set(c.id for c in before) & set(c.id for c in after)) >= len(before) - 2
    other = chunk_document(document_from_text("b.txt", "\n\n".join(paragraphs)), embedder.tokenizer, params, "m")
    assert not set(c.id for c in other) & set(c.id for c in after), "the same text in another file is another chunk"


def test_repeated_text_in_one_document_gets_distinct_ids(embedder) -> None:
    para = "The same paragraph, long enough that two of them never fit in one small chunk."
    doc = document_from_text("rep.txt", "\n\n".join([para] * 3))
    chunks = chunk_document(doc, embedder.tokenizer, IndexParams(chunk_tokens=32, overlap_tokens=0), "m")
    assert len(chunks) == 3 and len({c.id for c in chunks}) == 3
    assert len({c.content_hash for c in chunks}) == 1


def test_chunk_metadata_round_trips(embedder) -> None:
    chunk = chunk_document(document_from_text("x", "Body text.", title="Title"), embedder.tokenizer, IndexParams(), "m")[0]
    from studio.core.rag.chunking import Chunk

    assert Chunk.from_metadata(chunk.id, chunk.text, chunk.metadata()) == chunk


@pytest.mark.parametrize("kwargs, message", [
    ({"chunk_tokens": 16}, "`chunk_tokens` should be a number between 32 and 2048, got 16."),
    ({"chunk_tokens": 64, "overlap_tokens": 64}, "`overlap_tokens` (64) should be smaller than `chunk_tokens` (64)."),
    ({"embedder": " "}, "No embedding model given."),
])
def test_index_params_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        IndexParams(**kwargs)
    assert str(info.value).startswith(message)
