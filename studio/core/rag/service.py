"""The RAG pipeline as one object the UI and the CLI call: knowledge bases, ingestion, search, answers, evaluation.

It owns the process's `KnowledgeBases` (connected on first use, so starting the studio never waits for
Chroma) and shares the one `ModelManager` for answers. Every method raises `StudioError` for what the
user can fix; long work (ingest, re-embed, evaluation) is a generator of progress events that stops
cleanly when its `cancel` event is set.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.rag.bm25 import tokenize
from studio.core.rag.catalog import DocumentInfo
from studio.core.rag.params import AnswerParams, IndexParams, RetrievalParams
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.config import GenerationParams
    from studio.core.generation import Chunk as TextChunk
    from studio.core.models import ModelManager
    from studio.core.rag.answer import RagAnswer
    from studio.core.rag.evaluation import RetrievalEvaluation
    from studio.core.rag.index import KnowledgeBaseInfo, KnowledgeBases
    from studio.core.rag.ingest import IngestProgress, IngestReport
    from studio.core.rag.retrieval import SearchResult

INSPECT_MODES = ("dense", "bm25", "hybrid", "reranked")
SAMPLE_DOCS = Path(__file__).resolve().parents[3] / "sample_data" / "docs"  # present in a source checkout
SAMPLE_KB = "halden-help-centre"
_WORD = re.compile(r"(?u)\b\w\w+\b")


@dataclass
class EvaluationProgress:
    done: int
    total: int


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files to ingest: each file as given, each folder's files recursively (hidden ones skipped), sorted.

    Files of unsupported types are kept, so ingestion reports each one by name instead of silently
    skipping it. Raises StudioError for a path that does not exist or a folder with no files.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise StudioError(f"Folder {path} holds no files.", "pick a folder with documents in it.")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise StudioError(f"{path} does not exist.", "check the path (a file or a folder of documents).")
    return out


def query_spans(text: str, query: str, stemming: bool = True) -> list[tuple[int, int]]:
    """Character spans of the words in `text` that match a BM25 term of `query` (for highlighting)."""
    terms = set(tokenize(query, stemming))
    if not terms:
        return []
    spans = []
    for match in _WORD.finditer(text):
        stemmed = tokenize(match.group(), stemming)
        if stemmed and stemmed[0] in terms:
            spans.append(match.span())
    return spans


class RagService:
    """Knowledge bases and grounded answers for one process. Thread-safe; build once (Services does)."""

    def __init__(self, workspace: object, models: ModelManager | None = None, chroma_url: str | None = None) -> None:
        self.workspace, self.models, self.chroma_url = workspace, models, chroma_url
        self._kbs: KnowledgeBases | None = None
        self._connecting = threading.Lock()

    @property
    def kbs(self) -> KnowledgeBases:
        """The knowledge bases, connected on first use; StudioError when a Chroma server cannot be reached."""
        with self._connecting:
            if self._kbs is None:
                from studio.core.rag.index import KnowledgeBases

                self._kbs = KnowledgeBases(self.workspace, self.chroma_url)  # type: ignore[arg-type]
            return self._kbs

    @property
    def where(self) -> str:
        """Where the vectors live, for the UI: the Chroma server's URL or the local folder."""
        return self.chroma_url or str(self.workspace.indexes_dir / "chroma")  # type: ignore[attr-defined]

    # Knowledge bases ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return self.kbs.names()

    def list(self) -> list[KnowledgeBaseInfo]:
        return self.kbs.list()

    def info(self, name: str) -> KnowledgeBaseInfo:
        return self.kbs.info(self._required(name))

    def create(self, name: str, params: IndexParams | None = None) -> KnowledgeBaseInfo:
        return self.kbs.create(name, params)

    def delete(self, name: str) -> None:
        self.kbs.delete(self._required(name))

    def documents(self, name: str) -> list[DocumentInfo]:
        return self.kbs.documents(self._required(name))

    def delete_document(self, name: str, document: str) -> int:
        if not (document or "").strip():
            raise StudioError("No document picked.", "pick a document in the documents table first.")
        return self.kbs.delete_document(self._required(name), document)

    @staticmethod
    def _required(name: str | None) -> str:
        if not (name or "").strip():
            raise StudioError("No knowledge base picked.", "pick one in the list, or create one first.")
        return str(name).strip()

    # Ingestion -------------------------------------------------------------------------------------------
    def ingest(self, name: str, paths: Sequence[str | Path], cancel: threading.Event | None = None,
               embedder: str | None = None) -> Iterator[IngestProgress | IngestReport]:
        """Add or update files and folders (see `ingest.ingest`); ends with an IngestReport."""
        from studio.core.rag.ingest import ingest

        files = expand_paths(paths)
        if not files:
            raise StudioError("No files given.", "upload files or pick a folder of documents.")
        return ingest(self.kbs, self._required(name), files, cancel, embedder)

    def ingest_beir(self, name: str, folder: str | Path, cancel: threading.Event | None = None,
                    ) -> Iterator[IngestProgress | IngestReport]:
        """Ingest a BEIR corpus.jsonl: one document per entry, named by its _id (what qrels refer to)."""
        from studio.core.rag.evaluation import BeirDataset, load_corpus
        from studio.core.rag.ingest import ingest

        return ingest(self.kbs, self._required(name), BeirDataset(load_corpus(folder), {}, {}).documents(), cancel)

    def import_samples(self, cancel: threading.Event | None = None) -> Iterator[IngestProgress | IngestReport]:
        """Create (if needed) the SAMPLE_KB knowledge base and ingest sample_data/docs into it."""
        if not SAMPLE_DOCS.is_dir():
            raise StudioError(f"The sample documents are not here ({SAMPLE_DOCS}).",
                              "run the studio from a checkout of its repository, which has sample_data/.")
        if SAMPLE_KB not in self.names():
            self.create(SAMPLE_KB)
        return self.ingest(SAMPLE_KB, [SAMPLE_DOCS], cancel)

    def reembed(self, name: str, embedder: str, cancel: threading.Event | None = None,
                ) -> Iterator[IngestProgress | IngestReport]:
        from studio.core.rag.ingest import reembed

        if not (embedder or "").strip():
            raise StudioError("No embedding model given to re-embed with.", "enter a sentence-transformers id or folder.")
        return reembed(self.kbs, self._required(name), embedder.strip(), cancel)

    # Search and answers ------------------------------------------------------------------------------------
    def search(self, name: str, query: str, params: RetrievalParams | None = None) -> SearchResult:
        from studio.core.rag.retrieval import search

        return search(self.kbs, self._required(name), query, params)

    def inspect(self, name: str, query: str, params: RetrievalParams | None = None) -> dict[str, SearchResult | str]:
        """The same query through dense, BM25, hybrid and (when a reranker is set) reranked hybrid search.

        Each value is a SearchResult, or a string saying why that retriever is unavailable.
        """
        params = params or RetrievalParams()
        out: dict[str, SearchResult | str] = {}
        for mode in ("dense", "bm25", "hybrid"):
            out[mode] = self.search(name, query, replace(params, mode=mode, reranker=""))
        if params.reranker:
            out["reranked"] = self.search(name, query, replace(params, mode="hybrid"))
        else:
            out["reranked"] = "unavailable: no cross-encoder configured (set one under Retrieval settings)"
        return out

    def answer(self, name: str, question: str, retrieval: RetrievalParams | None = None,
               params: AnswerParams | None = None, generation: GenerationParams | None = None,
               adapter: str | None = None, cancel: threading.Event | None = None,
               ) -> Iterator[SearchResult | TextChunk | RagAnswer]:
        """Retrieve, then stream a grounded answer from the shared model (see `answer.answer`)."""
        from studio.core.rag.answer import answer

        if self.models is None:
            raise StudioError("This RAG service has no model manager.", "build it with the studio's model manager.")
        return answer(self.models, self.kbs, self._required(name), question, retrieval, params, generation,
                      adapter or None, cancel)

    # Evaluation -----------------------------------------------------------------------------------------------
    def evaluate(self, name: str, queries: str | Path, qrels: str | Path, params: RetrievalParams | None = None,
                 progress: Callable[[int, int], None] | None = None) -> RetrievalEvaluation:
        """nDCG@10, Recall@10/100, MRR@10 per retriever for BEIR queries + qrels against knowledge base `name`.

        The qrels' corpus ids are matched against document names (file names, or BEIR _ids of an
        ingested corpus). StudioError when none of them is in the knowledge base.
        """
        from studio.core.rag.evaluation import evaluate_retrieval, load_queries

        name = self._required(name)
        data = load_queries(queries, qrels)
        present = {d.name for d in self.documents(name)}
        judged = {doc for docs in data.qrels.values() for doc in docs}
        if not judged & present:
            sample = ", ".join(sorted(judged)[:3])
            raise StudioError(f"None of the documents the qrels judge ({sample}…) is in knowledge base {name!r}.",
                              "ingest the documents first (for a BEIR corpus: the corpus.jsonl), or check that the "
                              "qrels' corpus-id column uses the documents' file names.")
        return evaluate_retrieval(self.kbs, name, data, params, progress=progress)

    def evaluate_events(self, name: str, queries: str | Path, qrels: str | Path, params: RetrievalParams | None = None,
                        cancel: threading.Event | None = None) -> Iterator[EvaluationProgress | RetrievalEvaluation]:
        """`evaluate` run in a thread, yielding progress while it runs and the evaluation at the end."""
        events: list[EvaluationProgress] = []
        outcome: dict[str, object] = {}
        done = threading.Event()

        def report(i: int, n: int) -> None:
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            events.append(EvaluationProgress(i, n))

        def work() -> None:
            try:
                outcome["result"] = self.evaluate(name, queries, qrels, params, report)
            except BaseException as err:  # noqa: BLE001  (re-raised in the caller's thread)
                outcome["error"] = err
            finally:
                done.set()

        threading.Thread(target=work, name="studio-rag-eval", daemon=True).start()
        while not done.wait(0.25):
            if events:
                yield events[-1]
        error = outcome.get("error")
        if isinstance(error, _Cancelled):
            raise StudioError("Evaluation cancelled.", "run it again when you are ready.")
        if error is not None:
            raise error  # type: ignore[misc]
        yield outcome["result"]  # type: ignore[misc]


class _Cancelled(Exception):
    pass
