"""The RAG tab through the launched app's API (gradio_client, by api_name), and its handlers directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from test_rag_loaders import _encrypted_pdf, make_docx, make_pdf
from test_ui_api import studio  # noqa: F401  (the launched app, one per module)

pytestmark = pytest.mark.slow

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROUTER = ("# Router\n\n## Reset\n\nHold the reset button for ten seconds to restore the factory settings.\n\n"
          "## Lights\n\nA blinking amber light means the firmware is updating.\n")
WARRANTY = "The warranty covers two years of repairs. It does not cover water damage."


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("docs")
    (folder / "router.md").write_text(ROUTER, encoding="utf-8")
    (folder / "warranty.txt").write_text(WARRANTY, encoding="utf-8")
    (folder / "support.html").write_text("<h1>Support</h1><p>Call support on weekdays from 9 to 5.</p>", encoding="utf-8")
    make_docx(folder / "guide.docx")
    make_pdf(folder / "manual.pdf", ["Chapter one: unpacking the box.", "Chapter two: mounting the router on a wall."])
    bad = tmp_path_factory.mktemp("bad")
    (bad / "empty.txt").write_bytes(b"")
    (bad / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (bad / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    (bad / "garbled.md").write_bytes(b"abc \x81\x8d\x8f\x90 def")
    _encrypted_pdf(bad)
    (bad / "open.pdf").unlink()
    return {p.name: p for p in [*sorted(folder.iterdir()), *sorted(bad.iterdir())]}


def ingest(client: Any, kb: str, files: list[Path] = (), paths: str = "") -> tuple[Any, ...]:
    job = client.submit(kb, [handle_file(str(f)) for f in files] or None, None, paths, api_name="/rag_ingest")
    list(job)
    return job.result()


@pytest.fixture(scope="module")
def manuals(studio: tuple[Any, Any], docs: dict[str, Path]) -> str:
    client, _ = studio
    client.predict("manuals", api_name="/rag_create")
    good = [docs[n] for n in ("router.md", "warranty.txt", "support.html", "guide.docx", "manual.pdf")]
    ingest(client, "manuals", good)
    return "manuals"


def test_create_refuses_a_taken_or_bad_name(studio: tuple[Any, Any], manuals: str) -> None:
    client, _ = studio
    with pytest.raises(AppError, match="already exists"):
        client.predict(manuals, api_name="/rag_create")
    with pytest.raises(AppError, match="is not usable"):
        client.predict("a", api_name="/rag_create")
    with pytest.raises(AppError, match="`overlap_tokens` .* should be smaller than `chunk_tokens`"):
        client.predict("other", chunk_tokens=64, overlap_tokens=64, api_name="/rag_create")


def test_bad_files_each_get_their_own_error_and_the_rest_lands(studio: tuple[Any, Any], docs: dict[str, Path]) -> None:
    client, services = studio
    client.predict("mixed", api_name="/rag_create")
    bad = ["empty.txt", "photo.txt", "sheet.xlsx", "broken.pdf", "garbled.md", "locked.pdf"]
    report, summary, table, *_ = ingest(client, "mixed", [docs["router.md"], *(docs[n] for n in bad), docs["warranty.txt"]])
    assert "2 added, 6 failed" in report
    for name, reason in [("empty.txt", "is empty (0 bytes)"), ("photo.txt", "is a binary file, not text"),
                         ("sheet.xlsx", "unsupported file type '.xlsx'"), ("broken.pdf", "is not a readable PDF"),
                         ("garbled.md", "is not UTF-8 text"), ("locked.pdf", "is password-protected")]:
        assert f"| `{name}` | **failed** |" in report
        assert any(line.startswith(f"- {name}: ") and reason in line and "Fix:" in line for line in report.splitlines()), name
    assert [r[0] for r in table["data"]] == ["router.md", "warranty.txt"]
    assert "2 documents" in summary
    assert {d.name for d in services.rag.documents("mixed")} == {"router.md", "warranty.txt"}


def test_reingesting_adds_nothing_and_an_edited_file_leaves_nothing_stale(
        studio: tuple[Any, Any], docs: dict[str, Path], tmp_path: Path) -> None:
    client, services = studio
    client.predict("edits", api_name="/rag_create")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "router.md").write_text(ROUTER, encoding="utf-8")
    (folder / "warranty.txt").write_text(WARRANTY, encoding="utf-8")
    ingest(client, "edits", paths=str(folder))
    before = services.rag.info("edits").chunks
    report, *_ = ingest(client, "edits", paths=str(folder))
    assert "2 unchanged" in report and services.rag.info("edits").chunks == before
    (folder / "router.md").write_text(ROUTER.replace("ten seconds", "thirty seconds"), encoding="utf-8")
    report, *_ = ingest(client, "edits", paths=str(folder))
    assert "1 updated, 1 unchanged" in report
    texts = services.rag.kbs.collection("edits").get(include=["documents"])["documents"]
    assert any("thirty seconds" in t for t in texts) and not any("ten seconds" in t for t in texts)


def test_ingest_without_files_or_knowledge_base_says_what_to_do(studio: tuple[Any, Any], manuals: str) -> None:
    client, _ = studio
    with pytest.raises(AppError, match="No files to ingest"):
        ingest(client, manuals)
    with pytest.raises(AppError, match="No knowledge base picked"):
        ingest(client, "", paths="/tmp")
    with pytest.raises(AppError, match="does not exist"):
        ingest(client, manuals, paths="/no/such/folder")


def test_ask_streams_an_answer_with_sources(studio: tuple[Any, Any], manuals: str, tiny_model_dir: Path) -> None:
    client, services = studio
    if services.runtime.state.info is None:
        with pytest.raises(AppError, match="No model is loaded"):
            client.predict(manuals, "How do I reset the router?", "", api_name="/rag_ask")
        client.predict(str(tiny_model_dir), api_name="/load_model")
    job = client.submit(manuals, "How do I reset the router?", "", max_new_tokens=8, temperature=0.0, api_name="/rag_ask")
    outputs = list(job)
    answer, cited, stats, sources = job.result()
    assert len(outputs) >= 3  # sources first, then streamed text, then the final answer
    assert outputs[0][3] and "router.md · Router &gt; Reset" in outputs[0][3]  # sources before the answer
    assert "tok/s" in stats and "base model" in stats
    assert "<mark>reset</mark>" in sources.lower() and "BM25:" in sources and "dense:" in sources
    assert cited.startswith("**Cited:**")
    *_, sources = client.predict(manuals, "How do I reset the router?", "", retrieval_top_k=2, max_new_tokens=2,
                                 api_name="/rag_ask")
    assert sources.count("<b>[") == 2 and "2 chunks" in sources  # not the sampling top-k


def test_no_relevant_context_is_said_without_generating(studio: tuple[Any, Any], manuals: str, tiny_model_dir: Path) -> None:
    client, services = studio
    if services.runtime.state.info is None:
        client.predict(str(tiny_model_dir), api_name="/load_model")
    answer, cited, stats, sources = client.predict(manuals, "How do I reset the router?", "", retrieval_min_similarity=0.99,
                                                   api_name="/rag_ask")
    assert answer.startswith("No relevant context found") and stats == "no answer generated · base model"
    assert "below the relevance threshold" in sources


def test_filters_restrict_the_search(studio: tuple[Any, Any], manuals: str) -> None:
    client, _ = studio
    dense, bm25, hybrid, reranked, timing = client.predict(manuals, "router", retrieval_file_types=["pdf"], api_name="/rag_inspect")
    assert {row[1] for row in hybrid["data"]} == {"manual.pdf"}
    assert all(row[2].startswith("page ") for row in hybrid["data"])
    assert "unavailable: no cross-encoder configured" in reranked["data"][0][1]
    assert "dense" in timing and "ms" in timing
    with pytest.raises(AppError, match="Both fusion weights are 0"):
        client.predict(manuals, "router", retrieval_dense_weight=0, retrieval_bm25_weight=0, api_name="/rag_inspect")


def test_delete_document_and_knowledge_base(studio: tuple[Any, Any], docs: dict[str, Path]) -> None:
    client, services = studio
    client.predict("scratch", api_name="/rag_create")
    ingest(client, "scratch", [docs["router.md"], docs["warranty.txt"]])
    status, summary, table, *_ = client.predict("scratch", "router.md", api_name="/rag_delete_document")
    assert status == "Removed `router.md` (2 chunks)." and [r[0] for r in table["data"]] == ["warranty.txt"]
    with pytest.raises(AppError, match="has no document named 'router.md'"):
        client.predict("scratch", "router.md", api_name="/rag_delete_document")
    with pytest.raises(AppError, match="type its name in the box"):
        client.predict("scratch", "", api_name="/rag_delete")
    client.predict("scratch", "scratch", api_name="/rag_delete")
    assert "scratch" not in services.rag.names()


def test_evaluation_scores_every_retriever(studio: tuple[Any, Any], manuals: str, tmp_path: Path) -> None:
    client, _ = studio
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [{"_id": "q1", "text": "how long is the warranty"},
                                                          {"_id": "q2", "text": "reset button factory settings"}]))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\twarranty.txt\t1\nq2\trouter.md\t1\n")
    status, table, plot = client.predict(manuals, handle_file(str(queries)), handle_file(str(qrels)),
                                         api_name="/rag_evaluate")
    assert status == "**Done:** 2 queries."
    assert [row[0] for row in table["data"]] == ["dense", "bm25", "hybrid"]
    assert table["headers"] == ["retriever", "nDCG@10", "Recall@10", "Recall@100", "MRR@10"]
    assert all(0.0 <= v <= 1.0 for row in table["data"] for v in row[1:])
    assert plot is not None
    qrels.write_text("q1\tnot-a-document.txt\t1\n")
    with pytest.raises(AppError, match="None of the documents the qrels judge"):
        client.predict(manuals, handle_file(str(queries)), handle_file(str(qrels)), api_name="/rag_evaluate")


def test_cancel_stops_an_ingestion_and_keeps_what_was_written(tmp_path: Path) -> None:
    from studio.config import Settings
    from studio.services import Services
    from studio.ui.rag_tab import RagHandlers

    services = Services.build(Settings(workspace=tmp_path / "ws"))
    services.rag.create("big")
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(" ".join(f"Sentence {i}.{j} about topic {i * j}." for j in range(400)))
    on = RagHandlers(services)
    events = on.ingest("big", None, None, str(folder), progress=lambda *a, **k: None)
    first = next(events)
    assert first[0].startswith("File 1 of 6")
    assert on.cancel("big").startswith("**Cancelling:**")
    *_, last = list(events)
    assert last[0].startswith("**Cancelled.**") and "cancelled" in last[0]
    assert services.rag.info("big").chunks < 6 * 10  # not everything landed
    assert on.cancel("big") == "Nothing is being ingested into this knowledge base."
