"""Adding files to a knowledge base, and re-embedding one with another model.

`ingest()` yields `IngestProgress` events and ends with one `IngestReport`. Per file it reads,
chunks, embeds only the chunks whose ids are new (consecutive small files are embedded together),
then writes: new chunks first, then the kept chunks' positions, and only then deletes the chunks
the new version no longer has. So an unchanged
file adds nothing, an edited file leaves nothing stale, and a file that fails or is cancelled before
its write leaves the knowledge base exactly as it was. A bad file never stops the batch.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from studio.core.rag.catalog import Catalog, CatalogRow
from studio.core.rag.chunking import Chunk, chunk_document
from studio.core.rag.embeddings import Embedder, get_embedder
from studio.core.rag.index import PAGE_SIZE, KnowledgeBases, iter_chunks
from studio.core.rag.loaders import Document, load_document
from studio.errors import StudioError

Stage = Literal["reading", "embedding", "unchanged", "written", "failed", "cancelled"]
Status = Literal["added", "updated", "unchanged", "failed", "cancelled"]


@dataclass
class IngestProgress:
    stage: Stage
    file: str
    files_done: int
    files_total: int
    chunks_embedded: int  # so far in this call
    chunks_to_embed: int = 0  # of the current file
    message: str = ""


@dataclass
class FileResult:
    file: str
    status: Status
    chunks: int = 0  # chunks of the document after ingestion
    added: int = 0
    removed: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    knowledge_base: str
    files: list[FileResult]
    chunks_embedded: int
    seconds: float
    cancelled: bool = False

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def summary(self) -> str:
        counts = {s: sum(f.status == s for f in self.files) for s in ("added", "updated", "unchanged", "failed", "cancelled")}
        parts = [f"{n} {s}" for s, n in counts.items() if n]
        return f"{', '.join(parts) or 'nothing to do'} · {self.chunks_embedded} chunks embedded in {self.seconds:.1f} s"


Source = str | Path | Document


def _name(source: Source) -> str:
    return source.name if isinstance(source, Document) else Path(source).name


GROUP_CHUNKS = 64  # new chunks of consecutive files are embedded together up to this many: small files batch well


@dataclass
class _Pending:
    index: int
    doc: Document
    chunks: list[Chunk]
    existing: set[str]
    new: list[Chunk]


def ingest(kbs: KnowledgeBases, kb: str, sources: Sequence[Source], cancel: threading.Event | None = None,
           embedder: str | None = None) -> Iterator[IngestProgress | IngestReport]:
    """Add or update `sources` (file paths or in-memory Documents) in knowledge base `kb`.

    Raises StudioError before any file is touched when `kb` does not exist or `embedder` is not
    the one it was built with; every per-file problem is reported in the final IngestReport instead.
    """
    run = _Ingestion(kbs, kb, len(sources), cancel or threading.Event(), embedder)
    try:
        group: list[_Pending] = []
        for index, source in enumerate(sources):
            if run.cancel.is_set():
                run.results[index] = FileResult(_name(source), "cancelled")
                continue
            if any(p.doc.name == _name(source) for p in group):  # the same name again: compare with what lands first
                yield from run.flush(group)
                group = []
            yield run.progress("reading", _name(source))
            outcome = run.prepare(index, source)
            if isinstance(outcome, IngestProgress):
                yield outcome
                continue
            group.append(outcome)
            if sum(len(p.new) for p in group) >= GROUP_CHUNKS:
                yield from run.flush(group)
                group = []
        yield from run.flush(group)
    finally:
        run.bm25.refresh()  # one rebuild for the whole batch, and only if something changed
    results = [run.results[i] for i in sorted(run.results)]
    yield IngestReport(kb, results, run.embedded, time.perf_counter() - run.started, cancelled=run.cancel.is_set())


class _Ingestion:
    """State of one ingest() call: settings, counters and per-file results (by position in the batch)."""

    def __init__(self, kbs: KnowledgeBases, kb: str, total: int, cancel: threading.Event, embedder: str | None) -> None:
        self.kbs, self.kb, self.total, self.cancel = kbs, kb, total, cancel
        self.opened = kbs.open(kb, embedder)
        self.params, self.model = self.opened.params, self.opened.embedder
        self.catalog, self.bm25 = self.opened.catalog, self.opened.bm25
        self.started, self.embedded = time.perf_counter(), 0
        self.results: dict[int, FileResult] = {}

    def progress(self, stage: Stage, name: str, to_embed: int = 0, done: int = 0, message: str = "") -> IngestProgress:
        return IngestProgress(stage, name, len(self.results), self.total, self.embedded + done, to_embed, message)

    def fail(self, index: int, name: str, err: Exception) -> IngestProgress:
        message = str(err) if isinstance(err, StudioError) else f"{name}: could not be ingested ({type(err).__name__}: {err})."
        self.results[index] = FileResult(name, "failed", error=message)
        return self.progress("failed", name, message=message)

    def prepare(self, index: int, source: Source) -> _Pending | IngestProgress:
        """Read and chunk one file; an unchanged or unreadable file is settled here (its event is returned)."""
        name = _name(source)
        try:
            doc = source if isinstance(source, Document) else load_document(source, self.params.max_file_bytes)
            if self.catalog.source_hash(doc.name) == doc.file_hash:
                self.results[index] = FileResult(name, "unchanged", chunks=len(self.catalog.source_ids(doc.name)), notes=doc.notes)
                return self.progress("unchanged", name)
            chunks = chunk_document(doc, self.model.tokenizer, self.params, self.model.name)
            existing = self.catalog.source_ids(doc.name)
            return _Pending(index, doc, chunks, existing, [c for c in chunks if c.id not in existing])
        except Exception as err:  # noqa: BLE001  (one broken file must not stop the batch)
            return self.fail(index, name, err)

    def flush(self, group: list[_Pending]) -> Iterator[IngestProgress]:
        """Embed the group's new chunks together, then write file by file; a cancel writes none of them."""
        new = [c for p in group for c in p.new]
        vectors: list[np.ndarray] = []
        for done in _embed_steps(self.model, new, vectors, self.cancel):
            yield self.progress("embedding", group[-1].doc.name, len(new), done)
        if self.cancel.is_set():
            for p in group:
                self.results[p.index] = FileResult(p.doc.name, "cancelled")
            return
        self.embedded += len(new)
        matrix, offset = (np.concatenate(vectors) if vectors else None), 0
        for p in group:
            part = matrix[offset:offset + len(p.new)] if matrix is not None else None
            offset += len(p.new)
            try:
                with self.kbs.lock(self.kb):
                    removed = write_document(self.opened.collection, self.catalog, self.bm25.terms, p.doc, p.chunks, p.new,
                                             part, p.existing)
            except Exception as err:  # noqa: BLE001
                self.kbs.recheck(self.kb)
                yield self.fail(p.index, p.doc.name, err)
                continue
            self.results[p.index] = FileResult(p.doc.name, "updated" if p.existing else "added", chunks=len(p.chunks),
                                               added=len(p.new), removed=removed, notes=p.doc.notes)
            yield self.progress("written", p.doc.name)


def _embed_steps(model: Embedder, chunks: list[Chunk], out: list[np.ndarray], cancel: threading.Event) -> Iterator[int]:
    """Embed in batches into `out`, yielding the running count; stops early when `cancel` is set."""
    texts = [c.embedding_text() for c in chunks]
    for i in range(0, len(texts), 32):
        if cancel.is_set():
            return
        out.append(model.embed(texts[i:i + 32]))
        yield min(i + 32, len(texts))


def write_document(collection: Any, catalog: Catalog, terms: Any, doc: Document, chunks: list[Chunk],
                   new: list[Chunk], vectors: np.ndarray | None, existing: set[str]) -> int:
    """Write one document's new version: add new chunks, restamp kept ones, then delete stale ones.

    On a failure before the stale chunks are deleted, what was added is removed again and the kept
    chunks get their old metadata back, so the document is exactly as before. Returns chunks removed.
    """
    current = {c.id for c in chunks}
    kept = [c for c in chunks if c.id in existing]
    stale = sorted(existing - current)
    before = collection.get(ids=[c.id for c in kept], include=["metadatas"]) if kept else {"ids": [], "metadatas": []}
    added: list[str] = []
    try:
        for i in range(0, len(new), PAGE_SIZE):
            batch = new[i:i + PAGE_SIZE]
            collection.add(ids=[c.id for c in batch], embeddings=vectors[i:i + PAGE_SIZE],
                           documents=[c.text for c in batch], metadatas=[c.metadata() for c in batch])
            added.extend(c.id for c in batch)
        if kept:
            collection.update(ids=[c.id for c in kept], metadatas=[c.metadata() for c in kept])
    except BaseException:
        _rollback(collection, added, before)
        raise
    for i in range(0, len(stale), PAGE_SIZE):
        collection.delete(ids=stale[i:i + PAGE_SIZE])
    catalog.apply(add=[CatalogRow(c.id, c.source, c.file_type, c.page, c.file_hash, terms(c.embedding_text())) for c in new],
                  remove=stale, rehash=(doc.name, doc.file_hash))
    return len(stale)


def _rollback(collection: Any, added: list[str], before: dict[str, Any]) -> None:
    try:
        for i in range(0, len(added), PAGE_SIZE):
            collection.delete(ids=added[i:i + PAGE_SIZE])
        if before["ids"]:
            collection.update(ids=before["ids"], metadatas=before["metadatas"])
    except Exception:  # noqa: BLE001  (the original error is the one to report; the catalog check resyncs)
        pass


# Re-embedding --------------------------------------------------------------------------------------------
def reembed(kbs: KnowledgeBases, kb: str, new_embedder: str,
            cancel: threading.Event | None = None) -> Iterator[IngestProgress | IngestReport]:
    """Rebuild every vector of `kb` with `new_embedder`; chunks, ids and BM25 stay as they are.

    The new vectors go into a temporary collection that replaces the old one only once complete,
    so a failure or cancel leaves the knowledge base untouched. Chunk boundaries were measured in
    the old embedder's tokens; chunks longer than the new model reads are noted in the report.
    """
    cancel = cancel or threading.Event()
    started = time.perf_counter()
    current = kbs.open(kb)
    old, params, generation = current.collection, current.params, current.catalog.generation
    if new_embedder.strip() == params.embedder:
        raise StudioError(f"Knowledge base {kb!r} is already embedded with {params.embedder!r}.",
                          "pick a different embedding model to re-embed with.")
    model = get_embedder(new_embedder)
    new_params = dataclasses.replace(params, embedder=new_embedder)
    temp_name = f"reembed-{uuid.uuid4().hex[:12]}"
    temp = kbs.client.create_collection(temp_name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None,
                                        metadata={**new_params.to_metadata(), "studio_dimension": model.dimension})
    total, done, too_long = old.count(), 0, 0
    try:
        for batch in _batches(iter_chunks(old), 256):
            if cancel.is_set():
                break
            batch = [dataclasses.replace(c, embedder=new_embedder) for c in batch]
            temp.add(ids=[c.id for c in batch], embeddings=model.embed([c.embedding_text() for c in batch]),
                     documents=[c.text for c in batch], metadatas=[c.metadata() for c in batch])
            done += len(batch)
            too_long += sum(c.tokens > model.max_tokens for c in batch)
            yield IngestProgress("embedding", kb, 0, 1, done, total)
        if cancel.is_set():
            kbs.client.delete_collection(temp_name)
            yield IngestReport(kb, [FileResult(kb, "cancelled")], done, time.perf_counter() - started, cancelled=True)
            return
        _swap(kbs, kb, old, temp, generation)
    except BaseException:
        _drop_quietly(kbs, temp_name)
        raise
    notes = [f"{too_long} chunks are longer than {new_embedder} reads ({model.max_tokens} tokens); their ends are not "
             "embedded. Re-create the knowledge base to re-chunk them."] if too_long else []
    yield IngestReport(kb, [FileResult(kb, "updated", chunks=total, notes=notes)], done, time.perf_counter() - started)


def _batches(items: Iterator[Chunk], size: int) -> Iterator[list[Chunk]]:
    batch: list[Chunk] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _swap(kbs: KnowledgeBases, kb: str, old: Any, temp: Any, generation: int) -> None:
    """Put `temp` in place of `old` under the name `kb`; at every step one of them holds the data."""
    with kbs.lock(kb):
        catalog = kbs.open(kb).catalog
        if catalog.generation != generation:
            raise StudioError(f"Knowledge base {kb!r} changed while it was being re-embedded (files were added or "
                              "removed), so the new vectors are incomplete; nothing was replaced.",
                              "re-embed again once no ingestion is running.")
        backup = f"backup-{uuid.uuid4().hex[:12]}"
        old.modify(name=backup)
        temp.modify(name=kb)
        kbs.client.delete_collection(backup)
        catalog.set_meta("collection_id", str(temp.id))  # same chunks: no need to rebuild the catalog or BM25


def _drop_quietly(kbs: KnowledgeBases, name: str) -> None:
    try:
        kbs.client.delete_collection(name)
    except Exception:  # noqa: BLE001
        pass
