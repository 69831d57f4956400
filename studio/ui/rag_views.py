"""Pure renderers for the RAG tab: knowledge-base summaries, ingestion reports, sources, rankings, metrics.

They take the core's dataclasses (duck-typed, so this module imports no ML library) and return
Markdown, HTML, table rows or a plotly figure; the tab module only wires them to components.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from studio.core.rag.service import query_spans

if TYPE_CHECKING:
    from studio.core.rag.answer import RagAnswer
    from studio.core.rag.catalog import DocumentInfo
    from studio.core.rag.evaluation import RetrievalEvaluation
    from studio.core.rag.index import KnowledgeBaseInfo
    from studio.core.rag.ingest import IngestProgress, IngestReport
    from studio.core.rag.retrieval import RetrievedChunk, SearchResult

DOCUMENT_HEADERS = ["document", "type", "chunks", "pages"]
RANKING_HEADERS = ["#", "document", "page / heading", "score", "text"]
METRIC_LABELS = {"ndcg@10": "nDCG@10", "recall@10": "Recall@10", "recall@100": "Recall@100", "mrr@10": "MRR@10"}


def kb_summary(info: KnowledgeBaseInfo | None, where: str) -> str:
    if info is None:
        return f"No knowledge base picked. Create one below; vectors are stored in `{where}`."
    p = info.params
    return (f"**{info.name}** · {info.documents} documents · {info.chunks} chunks · embedder `{p.embedder}` · "
            f"chunks of {p.chunk_tokens} tokens with {p.overlap_tokens} overlap · BM25 k1={p.bm25_k1} b={p.bm25_b}"
            f"{' (stemmed)' if p.stemming else ''} · stored in `{where}`")


def document_rows(documents: list[DocumentInfo]) -> list[list[Any]]:
    return [[d.name, d.file_type, d.chunks, d.pages if d.pages is not None else ""] for d in documents]


def progress_line(event: IngestProgress) -> str:
    """One line for the ingestion status while it runs."""
    step = f"File {min(event.files_done + 1, event.files_total)} of {event.files_total}"
    if event.stage == "embedding" and event.chunks_to_embed:
        return f"{step}: embedding `{event.file}` · {event.chunks_embedded} chunks embedded so far"
    if event.stage == "failed":
        return f"**Failed:** {event.message}"
    return f"{step}: {event.stage} `{event.file}` · {event.chunks_embedded} chunks embedded so far"


def progress_fraction(event: IngestProgress) -> float:
    if event.files_total == 0:
        return 1.0
    return min(1.0, event.files_done / event.files_total)


def _outcome(f: Any) -> str:
    if f.status == "failed":
        return "**failed**"
    if f.status == "updated":
        return f"updated: +{f.added} / -{f.removed} chunks ({f.chunks} now)"
    if f.status == "added":
        return f"added ({f.chunks} chunks)"
    return f"{f.status} ({f.chunks} chunks)" if f.status == "unchanged" else f.status


def report_markdown(report: IngestReport) -> str:
    """The batch's outcome: a summary line, each failure with its reason and fix, then one row per file."""
    head = ("**Cancelled.** Files not yet written were left out; the knowledge base holds what was written before."
            if report.cancelled else "**Done.**")
    lines = [f"{head} {report.summary()}"]
    if report.failed:
        lines.append(f"\n{len(report.failed)} file(s) failed and left the knowledge base unchanged; the others landed:\n")
        lines += [f"- {_cell(f.error)}" for f in report.failed]
    notes = [f"- `{f.file}`: {_cell(n)}" for f in report.files for n in f.notes]
    if notes:
        lines += ["\nNotes:\n", *notes]
    lines += ["\n| file | result |", "| --- | --- |"]
    lines += [f"| `{_cell(f.file)}` | {_outcome(f)} |" for f in report.files]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def where_label(chunk: Any) -> str:
    parts = [chunk.source] + ([f"page {chunk.page}"] if chunk.page else []) + ([chunk.heading] if chunk.heading else [])
    return " · ".join(parts)


def highlighted(text: str, query: str) -> str:
    """`text` as HTML with the words that match the query's BM25 terms in <mark>."""
    out, last = [], 0
    for start, end in query_spans(text, query):
        out.append(html.escape(text[last:start]) + f"<mark>{html.escape(text[start:end])}</mark>")
        last = end
    return "".join(out) + html.escape(text[last:])


def _score(label: str, score: float | None, rank: int | None) -> str:
    if score is None:
        return f"<span class='rag-score rag-missing'>{label}: —</span>"
    return f"<span class='rag-score'>{label}: {score:.3f} (#{rank})</span>"


def source_card(number: int, item: RetrievedChunk, query: str, cited: bool, in_prompt: bool = True) -> str:
    chunk = item.chunk
    badges = ("<span class='rag-badge rag-cited'>cited</span>" if cited else "") + \
             ("" if in_prompt else "<span class='rag-badge rag-dropped'>over the context budget: not in the prompt</span>")
    scores = " ".join([
        f"<span class='rag-score'>cosine: {item.similarity:.3f}</span>" if item.similarity is not None else "",
        _score("dense", item.dense_score, item.dense_rank), _score("BM25", item.bm25_score, item.bm25_rank),
        _score("fused", item.fused_score, item.fused_rank), _score("rerank", item.rerank_score, item.rerank_rank)])
    return (f"<div class='rag-source{' rag-source-cited' if cited else ''}'>"
            f"<div class='rag-source-head'><b>[{number}]</b> {html.escape(where_label(chunk))} "
            f"<span class='rag-chunk-no'>chunk {chunk.number + 1} · chars {chunk.start}–{chunk.end}</span> {badges}</div>"
            f"<div class='rag-scores'>{scores}</div>"
            f"<div class='rag-text'>{highlighted(chunk.text, query)}</div></div>")


def sources_html(result: SearchResult, answer: RagAnswer | None = None) -> str:
    """The sources panel: every retrieved chunk with its scores and highlighted text; cited ones marked."""
    if result.empty:
        dropped = f" ({result.below_threshold} below the relevance threshold)" if result.below_threshold else ""
        return f"<div class='rag-sources'><p>No chunk retrieved{dropped}.</p></div>"
    cited = {c.block.item.chunk.id for c in answer.citations} if answer else set()
    in_prompt = ({b.item.chunk.id for b in answer.prompt.blocks} if answer and answer.prompt else None)
    cards = [source_card(i, item, result.query, item.chunk.id in cited,
                         in_prompt is None or item.chunk.id in in_prompt)
             for i, item in enumerate(result.chunks, start=1)]
    head = f"<p class='rag-sources-head'>{len(result.chunks)} chunks · retrieval {result.timings_ms.get('total', 0):.0f} ms · " \
           f"reranker: {html.escape(result.reranker)}"
    if result.below_threshold:
        head += f" · {result.below_threshold} below the relevance threshold"
    return f"<div class='rag-sources'>{head}</p>{''.join(cards)}</div>"


def citations_markdown(answer: RagAnswer) -> str:
    """What the answer cited, below it."""
    if answer.no_context and not answer.prompt:
        return ""
    if not answer.citations:
        line = "**Cited:** nothing. The answer does not cite any passage, so check it against the sources."
    else:
        line = "**Cited:** " + " · ".join(html.escape(c.label) for c in answer.citations)
    if answer.unknown_citations:
        line += f"\n\n⚠ The answer cites {', '.join(f'[{n}]' for n in answer.unknown_citations)}, which no passage has."
    if answer.prompt and answer.prompt.dropped:
        line += f"\n\n{len(answer.prompt.dropped)} lower-ranked chunk(s) did not fit the context budget and were left out."
    return line


def ranking_rows(result: SearchResult | str, mode: str) -> list[list[Any]]:
    """One retriever's ranking for the inspector (or one row saying why it is unavailable)."""
    if isinstance(result, str):
        return [["", result, "", "", ""]]
    rows = []
    for item in result.chunks:
        score = {"dense": item.dense_score, "bm25": item.bm25_score, "hybrid": item.fused_score,
                 "reranked": item.rerank_score}.get(mode)
        chunk = item.chunk
        where = " · ".join(([f"page {chunk.page}"] if chunk.page else []) + ([chunk.heading] if chunk.heading else []))
        text = chunk.text.strip().replace("\n", " ")
        rows.append([item.rank, chunk.source, where, round(score, 4) if score is not None else "",
                     text[:160] + ("…" if len(text) > 160 else "")])
    return rows or [["", "no results", "", "", ""]]


def evaluation_rows(evaluation: RetrievalEvaluation) -> list[list[Any]]:
    return [[name] + [round(values[m], 4) for m in METRIC_LABELS] for name, values in evaluation.metrics.items()]


def evaluation_headers() -> list[str]:
    return ["retriever", *METRIC_LABELS.values()]


def evaluation_figure(evaluation: RetrievalEvaluation) -> Any:
    """Grouped bars: one group per metric, one bar per retriever."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in evaluation.metrics.items():
        fig.add_bar(name=name, x=list(METRIC_LABELS.values()), y=[values[m] for m in METRIC_LABELS],
                    text=[f"{values[m]:.3f}" for m in METRIC_LABELS], textposition="outside")
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.05], "title": "score"}, height=360,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40},
                      title=f"Retrieval quality on {evaluation.queries} queries", legend={"orientation": "h", "y": -0.15})
    return fig


RAG_CSS = """
.rag-sources { font-size: var(--text-sm); }
.rag-source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; margin: 6px 0; }
.rag-source-cited { border-color: var(--color-accent); box-shadow: 0 0 0 1px var(--color-accent); }
.rag-source-head { margin-bottom: 4px; }
.rag-chunk-no, .rag-missing { color: var(--body-text-color-subdued); }
.rag-badge { border-radius: 4px; padding: 0 6px; margin-left: 4px; font-size: var(--text-xs); }
.rag-cited { background: var(--color-accent); color: white; }
.rag-dropped { background: var(--background-fill-secondary); }
.rag-score { margin-right: 10px; font-family: var(--font-mono); font-size: var(--text-xs); }
.rag-text { white-space: pre-wrap; margin-top: 4px; }
.rag-text mark { background: #fde68a; color: inherit; padding: 0 1px; }
"""
