"""RAG tab: knowledge bases, document ingestion, grounded answers with sources, retrieval inspector, evaluation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, get_args

import gradio as gr

from studio.config import field_help
from studio.core.rag.loaders import FILE_TYPES
from studio.core.rag.params import AnswerParams, IndexParams, RetrievalMode, RetrievalParams
from studio.core.rag.service import SAMPLE_DOCS, SAMPLE_KB
from studio.errors import StudioError
from studio.ui import rag_views as views
from studio.ui.widgets import HIDDEN, MODEL_EVENTS, generation_inputs, merge_inputs, read_generation, slider, user_errors

if TYPE_CHECKING:
    from studio.services import Services

INTRO = ("RAG changes what the model **knows right now**: your documents are chunked, embedded into a Chroma index and "
         "searched by meaning and by keyword; the best chunks go into the prompt, and the answer cites them as [n].")
NO_ADAPTER = ("None (base model)", "")
INDEX_FIELDS = ("embedder", "chunk_tokens", "overlap_tokens", "max_file_mb", "bm25_k1", "bm25_b", "stemming")
RETRIEVAL_FIELDS = ("mode", "top_k", "candidates", "dense_weight", "bm25_weight", "rrf_k", "reranker",
                    "rerank_candidates", "min_similarity", "documents", "file_types")
INGEST_EVENTS: dict[str, Any] = {"concurrency_id": "rag-ingest", "concurrency_limit": 1}


def build_rag_tab(services: Services) -> gr.Tab:
    on = RagHandlers(services)
    with gr.Tab("RAG") as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=360):
                kb, summary, new_name, index, create = _knowledge_base_panel()
                uploads, folder, paths, ingest, cancel, status, samples = _ingest_panel()
                documents, document, delete_document = _documents_panel()
                reembed_model, reembed, confirm, delete_kb = _maintenance_panel()
            with gr.Column(scale=5, min_width=480):
                with gr.Tab("Ask"):
                    ask = _ask_panel()
                with gr.Tab("Retrieval inspector"):
                    probe, inspect, rankings, timings = _inspector_panel()
                with gr.Tab("Evaluation"):
                    evaluation = _evaluation_panel()
            with gr.Column(scale=2, min_width=300):
                adapter = gr.Dropdown([NO_ADAPTER], value="", label="Adapter",
                                      info="Answer with the plain base or an adapter attached in the Models tab.")
                retrieval = _retrieval_inputs()
                answer_params = _answer_inputs()
                gen = generation_inputs(open=False)

    kb_views = [summary, documents, document, retrieval["documents"]]  # the filter offers the documents
    tab.select(on.show, kb, [kb, adapter, *kb_views], show_progress="hidden", **HIDDEN)
    kb.change(on.pick, kb, kb_views, show_progress="hidden", **HIDDEN)
    create.click(on.create, new_name, [kb, new_name], inputs_kwargs=index, api_name="rag_create")
    ingesting = ingest.click(on.ingest, [kb, uploads, folder, paths], [status, *kb_views], api_name="rag_ingest",
                             **INGEST_EVENTS)
    ingesting.then(lambda: (None, None), None, [uploads, folder], **HIDDEN)
    samples.click(on.import_samples, None, [kb, status, *kb_views], api_name="rag_import_samples", **INGEST_EVENTS)
    cancel.click(on.cancel, kb, status, api_name="rag_cancel", **HIDDEN)
    delete_document.click(on.delete_document, [kb, document], [status, *kb_views], api_name="rag_delete_document")
    reembed.click(on.reembed, [kb, reembed_model], [status, *kb_views], api_name="rag_reembed", **INGEST_EVENTS)
    delete_kb.click(on.delete, [kb, confirm], [kb, confirm], api_name="rag_delete")

    # Prefixed, because retrieval and sampling both have a `top_k`.
    retrieval = {f"retrieval_{k}": v for k, v in retrieval.items()}
    settings = merge_inputs(retrieval, {f"answer_{k}": v for k, v in answer_params.items()}, gen)
    asking = gr.on([ask["question"].submit, ask["ask"].click], on.ask, [kb, ask["question"], adapter],
                   [ask["answer"], ask["citations"], ask["stats"], ask["sources"]], inputs_kwargs=settings,
                   api_name="rag_ask", show_progress="minimal", **MODEL_EVENTS)
    ask["stop"].click(None, None, None, cancels=[asking], **HIDDEN)
    inspect_event = {"fn": on.inspect, "inputs": [kb, probe], "outputs": [*rankings.values(), timings],
                     "inputs_kwargs": retrieval}
    gr.on([probe.submit, inspect.click], **inspect_event, api_name="rag_inspect")
    evaluation["run"].click(on.evaluate, [kb, evaluation["queries"], evaluation["qrels"]],
                            [evaluation["status"], evaluation["table"], evaluation["plot"]], inputs_kwargs=retrieval,
                            api_name="rag_evaluate", **INGEST_EVENTS)
    evaluation["cancel"].click(on.cancel_evaluation, kb, evaluation["status"], **HIDDEN)
    return tab


# Layout ---------------------------------------------------------------------------------------------------
def _knowledge_base_panel() -> tuple[Any, ...]:
    kb = gr.Dropdown([], value=None, label="Knowledge base", elem_id="rag-kb", allow_custom_value=True,
                     info="Each knowledge base is a Chroma collection with its own embedder and chunking.")
    summary = gr.Markdown(elem_id="rag-kb-summary")
    with gr.Accordion("New knowledge base", open=False):
        name = gr.Textbox(label="Name", placeholder="e.g. product-docs",
                          info="3-63 letters, digits, dots, dashes or underscores.")
        index = {
            "embedder": gr.Textbox(IndexParams().embedder, label="Embedding model",
                                   info=field_help(IndexParams, "embedder")),
            "chunk_tokens": slider(IndexParams, "chunk_tokens", "Chunk size (tokens)"),
            "overlap_tokens": slider(IndexParams, "overlap_tokens", "Overlap (tokens)"),
            "max_file_mb": slider(IndexParams, "max_file_mb", "Maximum file size (MB)"),
            "bm25_k1": slider(IndexParams, "bm25_k1", "BM25 k1"),
            "bm25_b": slider(IndexParams, "bm25_b", "BM25 b"),
            "stemming": gr.Checkbox(IndexParams().stemming, label="Stem words for BM25", info=field_help(IndexParams, "stemming")),
        }
        create = gr.Button("Create knowledge base", variant="primary")
    return kb, summary, name, index, create


def _ingest_panel() -> tuple[Any, ...]:
    gr.Markdown("### Add documents")
    suffixes = ", ".join(s for s in (".pdf", ".docx", ".md", ".html", ".txt"))
    uploads = gr.File(file_count="multiple", label=f"Files ({suffixes})", height=120)
    with gr.Accordion("Or a whole folder", open=False):
        folder = gr.File(file_count="directory", label="Folder (every file inside is ingested)", height=120)
        paths = gr.Textbox(label="Paths on the studio's machine", lines=2, placeholder="/data/manuals\n~/notes/faq.md",
                           info="One file or folder per line; folders are read recursively.")
    with gr.Row():
        ingest = gr.Button("Ingest", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    status = gr.Markdown(elem_id="rag-ingest-status")
    samples = gr.Button(f"Import the sample help centre ({SAMPLE_KB})", size="sm", visible=SAMPLE_DOCS.is_dir())
    return uploads, folder, paths, ingest, cancel, status, samples


def _documents_panel() -> tuple[Any, ...]:
    gr.Markdown("### Documents")
    table = gr.Dataframe(headers=views.DOCUMENT_HEADERS, value=[], interactive=False, wrap=True, max_height=320,
                         elem_id="rag-documents")
    with gr.Row(equal_height=True):
        document = gr.Dropdown([], value=None, label="Document", scale=3, allow_custom_value=True)
        delete = gr.Button("Delete document", variant="stop", scale=1, size="sm")
    return table, document, delete


def _maintenance_panel() -> tuple[Any, ...]:
    with gr.Accordion("Re-embed or delete the knowledge base", open=False):
        model = gr.Textbox(label="Re-embed with", placeholder="sentence-transformers id or folder",
                           info="Rebuilds every vector with another embedder; documents and chunks stay. The old index "
                                "keeps working until the new one is complete.")
        reembed = gr.Button("Re-embed")
        confirm = gr.Textbox(label="Type the knowledge base's name to delete it")
        delete = gr.Button("Delete knowledge base", variant="stop")
    return model, reembed, confirm, delete


def _ask_panel() -> dict[str, Any]:
    with gr.Row(equal_height=True):
        question = gr.Textbox(show_label=False, placeholder="Ask a question about your documents and press Enter", scale=6)
        ask = gr.Button("Ask", variant="primary", scale=1, min_width=80)
        stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
    answer = gr.Markdown(elem_id="rag-answer", min_height=80)
    citations = gr.Markdown(elem_id="rag-citations")
    stats = gr.Markdown(elem_id="rag-stats")
    gr.Markdown("#### Sources")
    sources = gr.HTML(elem_id="rag-sources")
    return {"question": question, "ask": ask, "stop": stop, "answer": answer, "citations": citations,
            "stats": stats, "sources": sources}


def _inspector_panel() -> tuple[Any, ...]:
    gr.Markdown("One query through every retriever, side by side: see what each finds and how fusion and reranking "
                "reorder it. The settings on the right apply.")
    with gr.Row(equal_height=True):
        probe = gr.Textbox(show_label=False, placeholder="A query to inspect", scale=6)
        inspect = gr.Button("Inspect", variant="primary", scale=1)
    labels = {"dense": "Dense (embeddings)", "bm25": "BM25 (keywords)", "hybrid": "Hybrid (reciprocal rank fusion)",
              "reranked": "Hybrid + cross-encoder rerank"}
    tables = {}
    for pair in (("dense", "bm25"), ("hybrid", "reranked")):
        with gr.Row(equal_height=False):
            for mode in pair:
                tables[mode] = gr.Dataframe(headers=views.RANKING_HEADERS, value=[], label=labels[mode],
                                            interactive=False, wrap=True, max_height=360)
    timings = gr.Markdown()
    return probe, inspect, tables, timings


def _evaluation_panel() -> dict[str, Any]:
    gr.Markdown("Score retrieval on judged queries (BEIR format): `queries.jsonl` lines `{\"_id\", \"text\"}` and a qrels "
                "TSV `query-id, corpus-id, score`, whose corpus ids are document names in this knowledge base. "
                "Metrics by ranx: nDCG@10, Recall@10, Recall@100, MRR@10.")
    with gr.Row():
        queries = gr.File(label="queries.jsonl", file_types=[".jsonl", ".json"], height=100)
        qrels = gr.File(label="qrels (.tsv)", file_types=[".tsv", ".txt"], height=100)
    with gr.Row():
        run = gr.Button("Evaluate retrieval", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    status = gr.Markdown()
    table = gr.Dataframe(headers=views.evaluation_headers(), value=[], interactive=False)
    plot = gr.Plot(label="Metrics per retriever")
    return {"queries": queries, "qrels": qrels, "run": run, "cancel": cancel, "status": status, "table": table, "plot": plot}


def _retrieval_inputs() -> dict[str, Any]:
    with gr.Accordion("Retrieval settings", open=True):
        inputs = {
            "mode": gr.Radio(list(get_args(RetrievalMode)), value=RetrievalParams().mode, label="Retriever",
                             info=field_help(RetrievalParams, "mode")),
            "top_k": slider(RetrievalParams, "top_k", "Top-k", maximum=50),
            "min_similarity": slider(RetrievalParams, "min_similarity", "Relevance threshold (cosine)"),
            "documents": gr.Dropdown([], value=[], multiselect=True, label="Only these documents",
                                     info=field_help(RetrievalParams, "documents")),
            "file_types": gr.CheckboxGroup(list(FILE_TYPES), value=[], label="Only these file types",
                                           info=field_help(RetrievalParams, "file_types")),
        }
        with gr.Accordion("Fusion and reranking", open=False):
            inputs.update({
                "candidates": slider(RetrievalParams, "candidates", "Candidates per retriever", maximum=200),
                "dense_weight": slider(RetrievalParams, "dense_weight", "Dense weight"),
                "bm25_weight": slider(RetrievalParams, "bm25_weight", "BM25 weight"),
                "rrf_k": slider(RetrievalParams, "rrf_k", "RRF k", maximum=200),
                "reranker": gr.Textbox("", label="Cross-encoder reranker",
                                       placeholder="unavailable: no cross-encoder configured",
                                       info=field_help(RetrievalParams, "reranker")),
                "rerank_candidates": slider(RetrievalParams, "rerank_candidates", "Candidates to rerank", maximum=100),
            })
    return inputs


def _answer_inputs() -> dict[str, Any]:
    with gr.Accordion("Answer settings", open=False):
        return {"context_tokens": slider(AnswerParams, "context_tokens", "Context budget (tokens)", maximum=8192),
                "answer_without_context": gr.Checkbox(False, label="Answer even without relevant context",
                                                      info=field_help(AnswerParams, "answer_without_context"))}


# Handlers -----------------------------------------------------------------------------------------------------
class RagHandlers:
    """The RAG tab's event handlers: each calls one RagService method and renders its result."""

    def __init__(self, services: Services) -> None:
        self.rag, self.runtime = services.rag, services.runtime
        self._cancels: dict[tuple[str, str], threading.Event] = {}
        self._guard = threading.Lock()

    def _job(self, kind: str, kb: str) -> threading.Event:
        with self._guard:
            event = self._cancels[(kind, kb)] = threading.Event()
            return event

    def _cancel(self, kind: str, kb: str) -> bool:
        with self._guard:
            event = self._cancels.get((kind, kb or ""))
        if event is None or event.is_set():
            return False
        event.set()
        return True

    # Knowledge bases ----------------------------------------------------------------------------
    def show(self, current: str | None) -> tuple[Any, ...]:
        """Refresh the knowledge base list and the adapter picker when the tab is opened."""
        adapters = gr.update(choices=[NO_ADAPTER] + [(a, a) for a in self.runtime.adapters()])
        try:
            names = self.rag.names()
        except StudioError as err:
            return (gr.update(choices=[], value=None), adapters, f"**Knowledge bases unavailable:** {err}",
                    [], gr.update(choices=[], value=None), gr.update(choices=[], value=[]))
        value = current if current in names else (names[0] if names else None)
        return (gr.update(choices=names, value=value), adapters, *self.pick(value))

    def pick(self, kb: str | None) -> tuple[Any, ...]:
        """Summary, documents table and document pickers of `kb`."""
        if not kb:
            return (views.kb_summary(None, self.rag.where), [], gr.update(choices=[], value=None),
                    gr.update(choices=[], value=[]))
        with user_errors():
            info = self.rag.info(kb)
            docs = self.rag.documents(kb)
        names = [d.name for d in docs]
        return (views.kb_summary(info, self.rag.where), views.document_rows(docs), gr.update(choices=names, value=None),
                gr.update(choices=names, value=[]))

    def create(self, name: str, **values: Any) -> tuple[Any, ...]:
        with user_errors():
            params = IndexParams(**{k: values[k] for k in INDEX_FIELDS})
            info = self.rag.create(name, params)
        gr.Info(f"Knowledge base {info.name!r} created. Add documents to it.")
        return gr.update(choices=self.rag.names(), value=info.name), ""

    def delete(self, kb: str, confirm: str) -> tuple[Any, ...]:
        with user_errors():
            if not kb:
                raise StudioError("No knowledge base picked.", "pick the one to delete first.")
            if (confirm or "").strip() != kb:
                raise StudioError(f"To delete {kb!r}, type its name in the box first.",
                                  "type the exact name; this deletes every chunk and vector in it.")
            self.rag.delete(kb)
        names = self.rag.names()
        gr.Info(f"Knowledge base {kb!r} deleted.")
        return gr.update(choices=names, value=names[0] if names else None), ""

    def delete_document(self, kb: str, document: str) -> tuple[Any, ...]:
        with user_errors():
            removed = self.rag.delete_document(kb, document)
        return (f"Removed `{document}` ({removed} chunks).", *self.pick(kb))

    # Ingestion -------------------------------------------------------------------------------------
    def ingest(self, kb: str, uploads: list[str] | None, folder: list[str] | None, paths: str,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        """Ingest uploaded files, an uploaded folder and typed paths, streaming progress, ending with the report."""
        with user_errors():
            sources = [*(uploads or []), *(folder or []), *[p.strip() for p in (paths or "").splitlines() if p.strip()]]
            if not kb:
                raise StudioError("No knowledge base picked.", "pick one, or create one under 'New knowledge base'.")
            if not sources:
                raise StudioError("No files to ingest.", "upload files or a folder, or type a path, then press Ingest.")
            yield from self._run(kb, self.rag.ingest(kb, sources, self._job("ingest", kb)), progress)

    def import_samples(self, progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        """One click: the sample documents into their own knowledge base, which becomes the picked one."""
        with user_errors():
            events = self.rag.import_samples(self._job("ingest", SAMPLE_KB))
            names = self.rag.names()
            for update in self._run(SAMPLE_KB, events, progress):
                yield (gr.update(choices=names, value=SAMPLE_KB), *update)

    def reembed(self, kb: str, model: str, progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        with user_errors():
            yield from self._run(kb, self.rag.reembed(kb, model, self._job("ingest", kb)), progress)

    def _run(self, kb: str, events: Iterator[Any], progress: gr.Progress) -> Iterator[tuple[Any, ...]]:
        unchanged = (gr.update(),) * 4
        for event in events:
            if hasattr(event, "stage"):
                progress(views.progress_fraction(event), desc=views.progress_line(event))
                yield (views.progress_line(event), *unchanged)
            else:
                yield (views.report_markdown(event), *self.pick(kb))

    def cancel(self, kb: str) -> str:
        if self._cancel("ingest", kb):
            return "**Cancelling:** the files being embedded are dropped; files already written stay."
        return "Nothing is being ingested into this knowledge base."

    # Asking -----------------------------------------------------------------------------------------------
    def ask(self, kb: str, question: str, adapter: str, **values: Any) -> Iterator[tuple[str, str, str, str]]:
        """Stream a grounded answer: sources as soon as retrieval is done, then the answer, then what it cited."""
        with user_errors():
            retrieval = _retrieval(values)
            params = AnswerParams(context_tokens=values["answer_context_tokens"],
                                  answer_without_context=values["answer_answer_without_context"])
            generation = read_generation(values)
            if not (question or "").strip():
                raise StudioError("The question is empty.", "type a question first.")
            result, text = None, ""
            for event in self.rag.answer(kb, question, retrieval, params, generation, adapter or None):
                if hasattr(event, "chunks"):
                    result = event
                    yield "", "", "_Generating…_", views.sources_html(event)
                elif hasattr(event, "citations"):
                    stats = event.completion.stats.line() if event.completion else "no answer generated"
                    stats += f" · adapter `{adapter}`" if adapter else " · base model"
                    yield event.text, views.citations_markdown(event), stats, views.sources_html(result, event)
                else:
                    text += event.text
                    yield text, "", "_Generating…_", gr.update()

    def inspect(self, kb: str, query: str, **values: Any) -> tuple[Any, ...]:
        with user_errors():
            results = self.rag.inspect(kb, query, _retrieval(values))
        tables = [views.ranking_rows(results[mode], mode) for mode in ("dense", "bm25", "hybrid", "reranked")]
        timing = " · ".join(f"{mode} {r.timings_ms.get('total', 0):.0f} ms" for mode, r in results.items()
                            if not isinstance(r, str))
        return (*tables, f"Search time: {timing}")

    # Evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, kb: str, queries: str | None, qrels: str | None, progress: gr.Progress = gr.Progress(),
                 **values: Any) -> Iterator[tuple[Any, ...]]:
        with user_errors():
            if not queries or not qrels:
                raise StudioError("Evaluation needs a queries file and a qrels file.", "upload both, then press Evaluate.")
            events = self.rag.evaluate_events(kb, queries, qrels, _retrieval(values), self._job("eval", kb or ""))
            yield "Starting (the first run compiles ranx's metric kernels: allow ~30 s)…", gr.update(), gr.update()
            for event in events:
                if hasattr(event, "metrics"):
                    yield (f"**Done:** {event.queries} queries.", views.evaluation_rows(event),
                           views.evaluation_figure(event))
                else:
                    progress((event.done, event.total), desc="queries searched")
                    yield f"{event.done} of {event.total} queries searched…", gr.update(), gr.update()

    def cancel_evaluation(self, kb: str) -> str:
        return "**Cancelling** the evaluation…" if self._cancel("eval", kb) else "No evaluation is running."


def _retrieval(values: dict[str, Any]) -> RetrievalParams:
    """RetrievalParams from the editors, which arrive as `retrieval_<field>` keyword arguments."""
    raw = {k: values[f"retrieval_{k}"] for k in RETRIEVAL_FIELDS}
    return RetrievalParams(**{k: (v or []) if k in ("documents", "file_types") else v for k, v in raw.items()})
