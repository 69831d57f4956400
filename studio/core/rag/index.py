"""Knowledge bases: Chroma collections (cosine space) plus, in the workspace, their catalog and BM25 index.

Local mode keeps Chroma under `<workspace>/indexes/chroma`; server mode talks to a Chroma server
(`chroma_url="http://host:port"`) and keeps only the catalog and BM25 files locally, keyed by the
server's address and the collection. Each collection's metadata records the embedding model and the
chunking and BM25 settings it was built with; using it with another embedder is refused.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from studio.core.rag.bm25 import BM25Index, forget
from studio.core.rag.catalog import Catalog, CatalogRow, DocumentInfo
from studio.core.rag.chunking import Chunk
from studio.core.rag.embeddings import Embedder, get_embedder
from studio.core.rag.params import IndexParams
from studio.errors import StudioError
from studio.storage.workspace import Workspace

_KB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")
_TEMPORARY = re.compile(r"^(reembed|backup)-[0-9a-f]{12}$")  # collections a running re-embed works in
PAGE_SIZE = 2000
# Counting a collection costs ~17 ms at 100k chunks, too much for every query: the catalog is checked
# against it at most this often (our own writes keep both in step; this catches other writers).
VERIFY_EVERY_S = 30.0


@dataclass
class OpenKnowledgeBase:
    """One knowledge base's collection, settings, catalog, BM25 index and embedder."""

    name: str
    collection: Any
    params: IndexParams
    catalog: Catalog
    bm25: BM25Index

    @property
    def embedder(self) -> Embedder:
        """Loaded on first use, so listing knowledge bases never loads a model."""
        return get_embedder(self.params.embedder)


@dataclass
class KnowledgeBaseInfo:
    name: str
    embedder: str
    documents: int
    chunks: int
    params: IndexParams


def check_kb_name(name: str) -> str:
    name = (name or "").strip()
    if not _KB_NAME.match(name) or ".." in name:
        raise StudioError(f"Knowledge base name {name!r} is not usable.",
                          "use 3-63 letters, digits, dots, dashes or underscores, starting and ending with a letter or digit.")
    return name


def embedder_mismatch(kb: str, recorded: str, requested: str) -> StudioError:
    return StudioError(
        f"Knowledge base {kb!r} was embedded with {recorded!r}, not {requested!r}. Vectors from different "
        "models are not comparable, so searching or adding with another embedder would return nonsense.",
        f"use {recorded!r} for this knowledge base, or re-embed it with {requested!r} (Re-embed rebuilds every "
        "vector; the documents and chunks stay).")


class KnowledgeBases:
    """Create, list, open and delete knowledge bases. Thread-safe; build once per process."""

    def __init__(self, workspace: Workspace, chroma_url: str | None = None) -> None:
        self.workspace = workspace
        self.chroma_url = (chroma_url or "").strip() or None
        self.client = self._connect()
        key = "local" if self.chroma_url is None else re.sub(r"[^A-Za-z0-9]+", "_", self.chroma_url).strip("_")
        self.bm25_root = workspace.indexes_dir / "bm25" / key
        self._locks: dict[str, threading.RLock] = {}
        self._catalogs: dict[str, Catalog] = {}
        self._verified: dict[str, tuple[str, float]] = {}  # name -> (collection id, when it last matched)
        self._guard = threading.Lock()

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        if self.chroma_url is None:
            return chromadb.PersistentClient(path=str(self.workspace.indexes_dir / "chroma"), settings=settings)
        url = urlparse(self.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StudioError(f"Chroma URL {self.chroma_url!r} is not an http(s)://host:port address.",
                              "give e.g. http://localhost:8000, or leave it empty to use the local index.")
        try:
            client = chromadb.HttpClient(host=url.hostname, port=url.port or (443 if url.scheme == "https" else 8000),
                                         ssl=url.scheme == "https", settings=settings)
            client.heartbeat()
        except Exception as err:  # noqa: BLE001  (connection refused, DNS, TLS... all mean unreachable)
            raise StudioError(f"Cannot reach the Chroma server at {self.chroma_url} ({type(err).__name__}: {err}).",
                              "start it (chroma run --path DIR --port 8000) or leave the Chroma URL empty "
                              "to use the local index.") from None
        return client

    # Knowledge bases ---------------------------------------------------------------------------------
    def lock(self, name: str) -> threading.RLock:
        """Held while a knowledge base's collection and catalog change together."""
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.list_collections() if not _TEMPORARY.match(c.name))

    def create(self, name: str, params: IndexParams | None = None) -> KnowledgeBaseInfo:
        """A new, empty knowledge base; raises StudioError if the name is taken or the embedder cannot load."""
        name, params = check_kb_name(name), params or IndexParams()
        if name in self.names():
            raise StudioError(f"A knowledge base named {name!r} already exists.", "pick another name, or add files to it.")
        embedder = get_embedder(params.embedder)
        if params.chunk_tokens > embedder.max_tokens:
            raise StudioError(f"Chunks of {params.chunk_tokens} tokens are longer than {params.embedder!r} reads "
                              f"({embedder.max_tokens} tokens); the rest would be ignored.",
                              f"set the chunk size to at most {embedder.max_tokens}.")
        self.client.create_collection(name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None,
                                      metadata={**params.to_metadata(), "studio_dimension": embedder.dimension})
        self._drop_local(name)
        return self.info(name)

    def collection(self, name: str) -> Any:
        try:
            return self.client.get_collection(name, embedding_function=None)
        except Exception as err:  # noqa: BLE001  (chromadb raises NotFoundError, or ValueError in older versions)
            if "does not exist" in str(err) or "not found" in str(err).lower():
                raise StudioError(f"There is no knowledge base named {name!r}.",
                                  "pick one from the list, or create it first.") from None
            raise

    def params(self, name: str) -> IndexParams:
        return IndexParams.from_metadata(self.collection(name).metadata or {})

    def info(self, name: str) -> KnowledgeBaseInfo:
        kb = self.open(name)
        return KnowledgeBaseInfo(name=name, embedder=kb.params.embedder, documents=len(kb.catalog.documents()),
                                 chunks=kb.catalog.count(), params=kb.params)

    def list(self) -> list[KnowledgeBaseInfo]:
        """Every knowledge base with its embedder and document and chunk counts."""
        return [self.info(name) for name in self.names()]

    def delete(self, name: str) -> None:
        with self.lock(name):
            self.collection(name)
            self.client.delete_collection(name)
            self._drop_local(name)

    def _drop_local(self, name: str) -> None:
        with self._guard:
            catalog = self._catalogs.pop(name, None)
            self._verified.pop(name, None)
        if catalog is not None:
            catalog.close()
        forget(self.bm25_root / name)
        shutil.rmtree(self.bm25_root / name, ignore_errors=True)

    # Opening -------------------------------------------------------------------------------------------------
    def open(self, name: str, embedder: str | None = None) -> OpenKnowledgeBase:
        """Everything one search or ingestion needs, fetched once.

        Refuses an `embedder` other than the one the knowledge base was built with, with an error
        that offers re-embedding. Rebuilds the local catalog from the collection when it is missing
        or out of step (new machine, shared Chroma server, crash between the two writes).
        """
        collection = self.collection(name)
        params = IndexParams.from_metadata(collection.metadata or {})
        if embedder and embedder.strip() and embedder.strip() != params.embedder:
            raise embedder_mismatch(name, params.embedder, embedder.strip())
        catalog = self._synced_catalog(name, collection, params)
        bm25 = BM25Index(catalog, self.bm25_root / name, k1=params.bm25_k1, b=params.bm25_b, stemming=params.stemming)
        return OpenKnowledgeBase(name, collection, params, catalog, bm25)

    def catalog(self, name: str) -> Catalog:
        return self.open(name).catalog

    def recheck(self, name: str) -> None:
        """Compare catalog and collection again on the next open (after a write that may have half-failed)."""
        with self._guard:
            self._verified.pop(name, None)

    def _synced_catalog(self, name: str, collection: Any, params: IndexParams) -> Catalog:
        with self.lock(name):
            with self._guard:
                catalog = self._catalogs.get(name)
                if catalog is None:
                    catalog = self._catalogs[name] = Catalog(self.bm25_root / name / "catalog.sqlite")
            checked_id, checked_at = self._verified.get(name, ("", 0.0))
            if checked_id == str(collection.id) and time.monotonic() - checked_at < VERIFY_EVERY_S:
                return catalog
            if catalog.get_meta("collection_id") != str(collection.id) or catalog.count() != collection.count():
                bm25 = BM25Index(catalog, self.bm25_root / name, stemming=params.stemming)
                rows = [CatalogRow(c.id, c.source, c.file_type, c.page, c.file_hash, bm25.terms(c.embedding_text()))
                        for c in iter_chunks(collection)]
                catalog.reset(rows, str(collection.id))
            self._verified[name] = (str(collection.id), time.monotonic())
        return catalog

    def documents(self, name: str) -> list[DocumentInfo]:
        """The documents table: one row per source file with its type, chunk count and pages."""
        return self.catalog(name).documents()

    def delete_document(self, name: str, document: str) -> int:
        """Remove every chunk of `document`; returns how many were removed."""
        kb = self.open(name)
        with self.lock(name):
            ids = sorted(kb.catalog.source_ids(document))
            if not ids:
                raise StudioError(f"Knowledge base {name!r} has no document named {document!r}.",
                                  "pick one from its documents table.")
            for i in range(0, len(ids), PAGE_SIZE):
                kb.collection.delete(ids=ids[i:i + PAGE_SIZE])
            kb.catalog.remove_source(document)
        kb.bm25.refresh()
        return len(ids)


def iter_chunks(collection: Any) -> Iterator[Chunk]:
    """Every chunk stored in `collection`, read page by page."""
    offset = 0
    while True:
        page = collection.get(include=["documents", "metadatas"], limit=PAGE_SIZE, offset=offset)
        if not page["ids"]:
            return
        for i, chunk_id in enumerate(page["ids"]):
            yield Chunk.from_metadata(chunk_id, page["documents"][i], page["metadatas"][i] or {})
        offset += len(page["ids"])
