"""`studio rag ...`: knowledge bases from the terminal, over the same RagService the UI uses.

    studio rag ingest PATH... --collection C [--create] [--embedder E] [--chunk-tokens N] [--overlap-tokens N]
    studio rag ingest --beir DIR --collection C [--create]
    studio rag query "question" --collection C [retrieval flags] [--answer --model M [--adapter DIR] ...] [--json]
    studio rag eval --collection C (--queries Q --qrels R | --beir DIR) [retrieval flags] [--json]
    studio rag list | docs --collection C | delete --collection C [--document NAME]

Results go to stdout, progress to stderr. Exit codes: 0 done; 1 some files failed to ingest (the
others landed); 2 a user error (`error:` and `fix:` lines); 130 interrupted. The first Ctrl-C lets the
work stop cleanly at its next check (ingestion keeps every file already written); a second aborts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from studio.cli import generation_params, load_model, model_options, sampling_options, workspace_option
from studio.config import Settings, field_help
from studio.core.rag.loaders import FILE_TYPES
from studio.core.rag.params import AnswerParams, IndexParams, RetrievalMode, RetrievalParams
from studio.errors import ConfigError, StudioError

if TYPE_CHECKING:
    from studio.core.rag.answer import RagAnswer
    from studio.core.rag.ingest import FileResult, IngestProgress
    from studio.core.rag.retrieval import RetrievedChunk, SearchResult
    from studio.core.rag.service import RagService

# Flags that differ from the field name; prefixes keep every *Params field's dest apart (both
# RetrievalParams and GenerationParams have a top_k).
_FLAGS = {"documents": "--document", "file_types": "--file-type"}
_PREFIX = {IndexParams: "index_", RetrievalParams: "retrieval_", AnswerParams: "answer_"}
_EVAL_IGNORES = ("mode", "top_k", "candidates")  # evaluation scores every retriever at depth 100
PREVIEW_CHARS = 200


# Parser ------------------------------------------------------------------------------------------------------
def add_rag_parser(sub: Any) -> None:
    rag = sub.add_parser("rag", help="Knowledge bases: ingest, query, evaluate, list, delete.",
                         description="Knowledge bases for retrieval-augmented generation, headless.")
    commands = rag.add_subparsers(dest="rag_command", metavar="RAG_COMMAND", required=True)

    ingest = _command(commands, "ingest", "Add or update files and folders in a knowledge base.")
    ingest.add_argument("paths", nargs="*", metavar="PATH", help="Files, or folders (read recursively), to add or update.")
    ingest.add_argument("--beir", metavar="DIR", help="Ingest a BEIR corpus.jsonl instead: one document per entry, named by its _id.")
    ingest.add_argument("--create", action="store_true",
                        help="Create the knowledge base if it does not exist yet, with the settings below.")
    _params_options(ingest.add_argument_group("knowledge base settings (with --create; fixed once created)"), IndexParams)

    query = _command(commands, "query", "Search a knowledge base, or answer from it with --answer.")
    query.add_argument("question")
    _params_options(query.add_argument_group("retrieval"), RetrievalParams)
    answer = query.add_argument_group("answer (with --answer; model and sampling flags below)")
    answer.add_argument("--answer", action="store_true", help="Stream a grounded answer from --model, citing the chunks.")
    answer.add_argument("--adapter", help="A peft adapter folder to apply on top of the model.")
    _params_options(answer, AnswerParams)
    query.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
    model_options(query, workspace=False)
    sampling_options(query, top_k_flag="--sample-top-k")

    evaluate = _command(commands, "eval", "nDCG@10, Recall@10/100 and MRR@10 of each retriever on BEIR queries and qrels.")
    evaluate.add_argument("--queries", help="BEIR queries.jsonl ({\"_id\": ..., \"text\": ...} per line).")
    evaluate.add_argument("--qrels", help="qrels TSV: query-id, corpus-id (a document name), score.")
    evaluate.add_argument("--beir", metavar="DIR", help="A BEIR folder: DIR/queries.jsonl and DIR/qrels/test.tsv (or qrels_test.tsv).")
    _params_options(evaluate.add_argument_group("retrieval (every retriever is scored)"), RetrievalParams, skip=_EVAL_IGNORES)
    evaluate.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")

    _command(commands, "list", "Knowledge bases with their embedder, documents and chunks.", collection=False)
    _command(commands, "docs", "The documents of a knowledge base.")
    delete = _command(commands, "delete", "Delete a knowledge base, or one document from it.")
    delete.add_argument("--document", help="Remove only this document (a name from `studio rag docs`).")


def _command(commands: Any, name: str, text: str, collection: bool = True) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=text, description=text)
    if collection:
        parser.add_argument("--collection", "-c", required=True, help="The knowledge base's name.")
    workspace_option(parser)
    parser.add_argument("--chroma-url", dest="chroma_url", default=argparse.SUPPRESS, help=field_help(Settings, "chroma_url"))
    return parser


def _params_options(group: Any, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls`, help and default from the field; unset flags stay None (the class decides)."""
    defaults = cls()
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        name, default = field.name, getattr(defaults, field.name)
        kwargs: dict[str, Any] = {"dest": _PREFIX[cls] + name, "default": None, "help": field_help(cls, name)}
        if isinstance(default, list):
            kwargs.update(action="append", help=kwargs["help"] + " Repeatable.", metavar="NAME")
            if name == "file_types":
                kwargs.update(choices=FILE_TYPES, metavar="TYPE")
        elif isinstance(default, bool):
            kwargs.update(action=argparse.BooleanOptionalAction, help=f"{kwargs['help']} (default {default})")
        else:
            kwargs.update(type=type(default), metavar=name.upper(), help=f"{kwargs['help']} (default {default!r})")
            if name == "mode":
                kwargs.update(choices=get_args(RetrievalMode), metavar="{" + ",".join(get_args(RetrievalMode)) + "}")
        group.add_argument(_flag(name), **kwargs)


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _params(cls: type, args: argparse.Namespace) -> Any:
    """`cls` from the flags given; a bad value is a ConfigError that names the flag."""
    try:
        return cls(**_given(cls, args))
    except ConfigError as err:
        field = getattr(err, "field", None)
        if field is None:
            raise
        flag = _flag(field)
        raise ConfigError(f"{flag}: {err.message}", (err.fix or "").replace(f"set {field} ", f"set {flag} ")) from None


def _given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    prefix = _PREFIX[cls]
    values = {f.name: getattr(args, prefix + f.name, None) for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if v is not None}


# Commands -------------------------------------------------------------------------------------------------------
def run_rag(args: argparse.Namespace, settings: Settings) -> int:
    from studio.core.rag.service import RagService
    from studio.storage.workspace import Workspace

    models = None
    if getattr(args, "answer", False):
        from studio.core.models import ModelManager

        models = ModelManager()
    rag = RagService(Workspace(settings.workspace), models, settings.chroma_url or None)
    run = {"ingest": run_ingest, "query": run_query, "eval": run_eval, "list": run_list, "docs": run_docs,
           "delete": run_delete}[args.rag_command]
    try:
        return run(args, rag, settings)
    except KeyboardInterrupt:  # a second Ctrl-C, or one while a model or embedder loads
        print("\n[cancelled]", file=sys.stderr)
        return 130


@contextmanager
def cancel_on_interrupt() -> Iterator[threading.Event]:
    """An event the first Ctrl-C sets, so the work stops cleanly at its next check; a second one interrupts."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread only
        yield cancel
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nstopping at the next safe point (Ctrl-C again to abort)…", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def run_ingest(args: argparse.Namespace, rag: RagService, settings: Settings) -> int:
    from studio.core.rag.ingest import IngestReport

    if bool(args.paths) == bool(args.beir):
        raise StudioError("Give either files and folders to ingest or --beir DIR.",
                          "e.g. `studio rag ingest docs/ --collection notes`, or `--beir scifact/` for a BEIR corpus.")
    index = _params(IndexParams, args)
    with cancel_on_interrupt() as cancel:
        # Built before the knowledge base is created: bad paths or a bad BEIR folder fail with nothing made.
        events = rag.ingest_beir(args.collection, args.beir, cancel) if args.beir else rag.ingest(args.collection, args.paths, cancel)
        _ensure_knowledge_base(rag, args.collection, args.create, index, _given(IndexParams, args))
        report, position = None, {}  # file -> its number in the batch (files are read in order)
        for event in events:
            if isinstance(event, IngestReport):
                report = event
                continue
            if event.stage == "reading":
                position[event.file] = len(position) + 1
            print(_progress_line(event, position.get(event.file, event.files_done)), file=sys.stderr)
    assert report is not None  # ingest() always ends with its report
    for result in report.files:
        print(_result_line(result))
        for note in result.notes:
            print(f"    note: {note}")
    print(report.summary())
    if report.cancelled:
        print("[cancelled]", file=sys.stderr)
        return 130
    return 1 if report.failed else 0


def _ensure_knowledge_base(rag: RagService, name: str, create: bool, index: IndexParams, given: dict[str, Any]) -> None:
    """Create `name` when --create asks for it; refuse settings flags that an existing one would ignore."""
    if name not in rag.names():
        if not create:
            raise StudioError(f"There is no knowledge base named {name!r}.",
                              "add --create to create it, or pick one from `studio rag list`.")
        info = rag.create(name, index)
        settings = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(info.params).items())
        print(f"Created knowledge base {name!r} ({settings}).")
        return
    current = rag.info(name).params
    for key, value in given.items():
        if getattr(current, key) != getattr(index, key):
            flag = _flag(key)
            raise ConfigError(f"Knowledge base {name!r} was created with {key}={getattr(current, key)!r}; "
                              f"{flag} {value} cannot change it.",
                              f"drop {flag} (settings are fixed when a knowledge base is created), or ingest into a new one.")


def _progress_line(event: IngestProgress, number: int) -> str:
    line = f"[{number}/{event.files_total}] {event.stage} {event.file}"
    if event.stage in ("embedding", "written"):
        line += f" · {_count(event.chunks_embedded, 'chunk')} embedded so far"
    return line + (f" · {event.message}" if event.message else "")


def _result_line(result: FileResult) -> str:
    head = f"{result.status:<9}  {result.file}"
    if result.status == "failed":
        return f"{head}: {result.error.removeprefix(result.file + ': ')}"
    if result.status == "updated":
        return f"{head} · {_count(result.chunks, 'chunk')} (+{result.added} new, -{result.removed} removed)"
    return f"{head} · {_count(result.chunks, 'chunk')}" if result.status != "cancelled" else head


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def run_query(args: argparse.Namespace, rag: RagService, settings: Settings) -> int:
    retrieval = _params(RetrievalParams, args)
    known = {d.name for d in rag.documents(args.collection)}  # also: the knowledge base exists
    for name in retrieval.documents:
        if name not in known:
            raise StudioError(f"Knowledge base {args.collection!r} has no document named {name!r}.",
                              f"pick names from `studio rag docs --collection {args.collection}`.")
    if args.answer:
        return _answer(args, rag, settings, retrieval)
    result = rag.search(args.collection, args.question, retrieval)
    print(json.dumps(dataclasses.asdict(result), indent=2) if args.json else _search_text(result))
    return 0


def _answer(args: argparse.Namespace, rag: RagService, settings: Settings, retrieval: RetrievalParams) -> int:
    from studio.core.rag.answer import RagAnswer
    from studio.core.rag.retrieval import SearchResult

    if not settings.model:
        raise StudioError("No model to answer with.", "pass --model <hub id or folder> (or set STUDIO_MODEL), "
                          "or drop --answer to list the matching chunks.")
    params = _params(AnswerParams, args)
    generation = generation_params(args)
    adapter = load_model(rag.models, settings, args.adapter)  # type: ignore[arg-type]  (run_rag gave it one)
    final: RagAnswer | None = None
    with cancel_on_interrupt() as cancel:
        for event in rag.answer(args.collection, args.question, retrieval, params, generation, adapter, cancel):
            if isinstance(event, SearchResult):
                print(_search_header(event), file=sys.stderr)
            elif isinstance(event, RagAnswer):
                final = event
            elif not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
    assert final is not None  # answer() always ends with its RagAnswer
    if args.json:
        print(json.dumps(_answer_json(final), indent=2))
    else:
        _print_sources(final)
    if final.completion is not None:
        print(final.completion.stats.line(), file=sys.stderr)
    if cancel.is_set():
        print("[cancelled]", file=sys.stderr)
        return 130
    return 0


def _print_sources(final: RagAnswer) -> None:
    from studio.core.rag.answer import Citation

    if final.completion is None:  # nothing passed the threshold, so nothing was generated
        print(final.text)
        return
    print()
    if final.no_context:
        print("\n(No passage passed the relevance threshold: this answer is not backed by the documents.)")
    elif final.citations:
        print("\nSources:")
        print("\n".join(c.label for c in final.citations))
    else:
        print("\nThe answer cited none of the passages it was given:")
        print("\n".join(Citation(b.number, b).label for b in final.prompt.blocks))  # type: ignore[union-attr]
    if final.unknown_citations:
        print(f"(It also cited {' '.join(f'[{n}]' for n in final.unknown_citations)}, which no passage has.)")


def _search_header(result: SearchResult) -> str:
    line = (f"{result.params.mode} search of {result.knowledge_base!r}: {_count(len(result.chunks), 'chunk')} "
            f"· {result.timings_ms.get('total', 0):.0f} ms")
    if result.below_threshold:
        line += f" · {result.below_threshold} below --min-similarity {result.params.min_similarity}"
    return line


def _search_text(result: SearchResult) -> str:
    lines = [_search_header(result)]
    if result.empty:
        lines.append("No chunk matched" + (" above the --min-similarity threshold." if result.below_threshold else "."))
    for item in result.chunks:
        chunk = item.chunk
        where = [chunk.source] + ([f"page {chunk.page}"] if chunk.page else []) + ([chunk.heading] if chunk.heading else [])
        text = " ".join(chunk.text.split())
        lines += [f"{item.rank:>2}. {' · '.join(where)}", f"    {_scores(item)}",
                  f"    {text[:PREVIEW_CHARS]}{'…' if len(text) > PREVIEW_CHARS else ''}"]
    return "\n".join(lines)


def _scores(item: RetrievedChunk) -> str:
    parts = [f"similarity {item.similarity:.3f}"] if item.similarity is not None else []
    for name in ("dense", "bm25", "fused", "rerank"):
        score, rank = getattr(item, f"{name}_score"), getattr(item, f"{name}_rank")
        if score is not None:
            parts.append(f"{name} {score:.4g} (#{rank})")
    return " · ".join(parts)


def _answer_json(final: RagAnswer) -> dict[str, Any]:
    citations = [{"number": c.number, "label": c.label, "chunk_id": c.block.item.chunk.id} for c in final.citations]
    return {**dataclasses.asdict(final.search), "answer": final.text, "no_context": final.no_context,
            "citations": citations, "unknown_citations": final.unknown_citations,
            "passages": len(final.prompt.blocks) if final.prompt else 0,
            "stats": dataclasses.asdict(final.completion.stats) if final.completion else None}


def run_eval(args: argparse.Namespace, rag: RagService, settings: Settings) -> int:
    from studio.core.rag.service import EvaluationProgress

    queries, qrels = _eval_files(args)
    params = _params(RetrievalParams, args)
    evaluation, shown = None, 0
    with cancel_on_interrupt() as cancel:
        try:
            for event in rag.evaluate_events(args.collection, queries, qrels, params, cancel):
                if not isinstance(event, EvaluationProgress):
                    evaluation = event
                elif event.done != shown:
                    shown = event.done
                    print(f"evaluating: {event.done}/{event.total} queries", file=sys.stderr)
        except StudioError:
            if not cancel.is_set():
                raise
            print("[cancelled]", file=sys.stderr)
            return 130
    assert evaluation is not None
    if args.json:
        print(json.dumps({"knowledge_base": args.collection, "queries": evaluation.queries, "metrics": evaluation.metrics},
                         indent=2))
    else:
        print(f"{evaluation.queries} queries against {args.collection!r}")
        print(evaluation.table())
    return 0


def _eval_files(args: argparse.Namespace) -> tuple[Path, Path]:
    """(queries, qrels) from --queries/--qrels or --beir DIR; the files themselves are checked by the loader."""
    from studio.core.rag.evaluation import qrels_file

    if args.beir:
        if args.queries or args.qrels:
            raise StudioError("--beir DIR already names the queries and qrels.", "give --beir, or --queries and --qrels.")
        folder = Path(args.beir).expanduser()
        if not folder.is_dir():
            raise StudioError(f"{folder} is not a folder.", "point --beir at a BEIR dataset folder.")
        return folder / "queries.jsonl", qrels_file(folder, "test")
    if not (args.queries and args.qrels):
        raise StudioError("Evaluation needs queries and their relevance judgements.",
                          "pass --queries QUERIES.jsonl --qrels QRELS.tsv, or --beir DIR.")
    return Path(args.queries).expanduser(), Path(args.qrels).expanduser()


def run_list(args: argparse.Namespace, rag: RagService, settings: Settings) -> int:
    infos = rag.list()
    print(_table(("name", "embedder", "documents", "chunks"), [(i.name, i.embedder, i.documents, i.chunks) for i in infos])
          if infos else f"No knowledge bases in {rag.where} yet. Make one with: studio rag ingest PATH -c NAME --create")
    return 0


def run_docs(args: argparse.Namespace, rag: RagService, settings: Settings) -> int:
    docs = rag.documents(args.collection)
    print(_table(("document", "type", "chunks", "pages"), [(d.name, d.file_type, d.chunks, d.pages or "") for d in docs])
          if docs else f"Knowledge base {args.collection!r} has no documents yet.")
    return 0


def run_delete(args: argparse.Namespace, rag: RagService, settings: Settings) -> int:
    if args.document is not None:
        removed = rag.delete_document(args.collection, args.document)
        print(f"Removed {args.document!r} from {args.collection!r} ({_count(removed, 'chunk')}).")
        return 0
    info = rag.info(args.collection)
    rag.delete(args.collection)
    print(f"Deleted knowledge base {args.collection!r} ({_count(info.documents, 'document')}, {_count(info.chunks, 'chunk')}).")
    return 0


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [headers, *rows])
