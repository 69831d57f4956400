"""`studio eval`: run a held-out set through several variants of one model and print the scorecard.

    studio eval --data FILE --model M --variants base,prompt,rag,tuned,tuned+rag [--adapter DIR]
                [--collection KB] [--preset NAME] [--limit N] [--batch-size 8] [--name RUN] [--json]

Variants: `base` (the example's own messages), `prompt` (a Playground preset, else the Playground's default
system prompt), `rag` (base + retrieval from --collection), `tuned` (--adapter), `tuned+rag` (both).
The model loads once; the run is saved under the workspace's evals/ like the UI's. Progress goes to
stderr. Exit codes: 0 done; 2 a user error (`error:` and `fix:` lines); 130 interrupted (the first
Ctrl-C stops at the next token and saves the examples every variant finished).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli import load_model, model_options
from studio.config import Settings
from studio.core.evaluation.variants import NEEDS_ADAPTER, NEEDS_COLLECTION, VARIANTS, build_variants
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.core.evaluation.runner import EvaluationRun
    from studio.core.prompting import PromptSpec

DEFAULT_MAX_NEW_TOKENS = 256


def add_eval_parser(sub: Any) -> None:
    text = "Score a held-out set with several variants (base, prompt, rag, tuned, tuned+rag) and save the run."
    parser = sub.add_parser("eval", help=text, description=text)
    parser.add_argument("--data", required=True, help="Held-out set: .jsonl/.json with question/reference (or messages), "
                                                       "optional facts and schema.")
    parser.add_argument("--variants", default="base,prompt",
                        help=f"Comma-separated variants to compare, from: {', '.join(VARIANTS)} (default base,prompt).")
    parser.add_argument("--adapter", help="A peft adapter folder: needed by tuned and tuned+rag.")
    parser.add_argument("--collection", "-c", help="A knowledge base (see `studio rag list`): needed by rag and tuned+rag.")
    parser.add_argument("--preset", help="A Playground preset name: the prompt variant's system prompt and technique.")
    parser.add_argument("--limit", type=int, help="Only the first N examples.")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=8, help="Prompts generated together (default 8).")
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"Upper bound on each answer's length (default {DEFAULT_MAX_NEW_TOKENS}); decoding is greedy.")
    parser.add_argument("--name", help="Run name: its folder under evals/ (default eval-<time>).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object (aggregates and folder) instead of the table.")
    model_options(parser)


def parse_variants(text: str) -> list[str]:
    """The variant names of `--variants`, in order, without repeats; StudioError names an unknown one."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise StudioError(f"Unknown variant{'s' if len(unknown) > 1 else ''}: {', '.join(unknown) or '(none given)'}.",
                          f"use a comma-separated list from: {', '.join(VARIANTS)}.")
    return names


def check_options(args: argparse.Namespace, settings: Settings) -> list[str]:
    """Every user error that can be caught before the model loads; returns the variant names."""
    names = parse_variants(args.variants)
    tuned = [n for n in names if n in NEEDS_ADAPTER]
    if tuned and not args.adapter:
        raise StudioError(f"{_variants(tuned)} a fine-tuned adapter.",
                          "pass --adapter <adapter folder> (see `studio adapters list`), or drop it from --variants.")
    if args.adapter and not Path(args.adapter).expanduser().is_dir():
        raise StudioError(f"Adapter folder {args.adapter} does not exist.",
                          "point --adapter at a folder with adapter_config.json.")
    grounded = [n for n in names if n in NEEDS_COLLECTION]
    if grounded and not args.collection:
        raise StudioError(f"{_variants(grounded)} a knowledge base to retrieve from.",
                          "pass --collection <name> (see `studio rag list`), or drop it from --variants.")
    data = Path(args.data).expanduser()
    if not data.is_file():
        raise StudioError(f"Evaluation data {data} does not exist.",
                          "pass --data with a .jsonl held-out set, e.g. sample_data/eval.jsonl.")
    if args.limit is not None and args.limit < 1:
        raise StudioError(f"--limit should be at least 1, got {args.limit}.",
                          "give a positive number of examples, or drop --limit.")
    if not settings.model:
        raise StudioError("No model to evaluate.", "pass --model <hub id or folder> (or set STUDIO_MODEL).")
    return names


def _variants(names: list[str]) -> str:
    return f"Variant {names[0]} needs" if len(names) == 1 else f"Variants {', '.join(names)} need"


def _prompt_spec(workspace: Any, preset: str | None) -> PromptSpec:
    from studio.core.prompting import PromptSpec

    if not preset:
        return PromptSpec()
    spec = PromptSpec.from_dict(workspace.load_preset(preset).get("prompt", {}))
    spec.validate()
    return spec


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """`studio eval`: check the options, load the model once, evaluate, save, print the scorecard."""
    from studio.cli_rag import cancel_on_interrupt
    from studio.config import GenerationParams
    from studio.core.evaluation import store
    from studio.core.evaluation.data import load_examples
    from studio.core.evaluation.runner import evaluate
    from studio.core.models import ModelManager
    from studio.storage.workspace import Workspace

    names = check_options(args, settings)
    workspace = Workspace(settings.workspace)
    prompt = _prompt_spec(workspace, args.preset)
    examples = load_examples(args.data, args.limit)
    if args.name and args.name in store.list_runs(workspace):
        raise StudioError(f"An evaluation named {args.name!r} already exists.", "choose another --name or delete the old run.")
    manager = ModelManager()
    rag = None
    if args.collection:
        from studio.core.rag.service import RagService

        rag = RagService(workspace, manager, settings.chroma_url or None)
        if args.collection not in rag.names():
            raise StudioError(f"There is no knowledge base named {args.collection!r}.",
                              "pick one from `studio rag list`, or build it with `studio rag ingest PATH -c NAME --create`.")
    try:
        adapter = load_model(manager, settings, args.adapter if set(names) & set(NEEDS_ADAPTER) else None)
        variants = build_variants(names, adapter, args.collection, prompt)
        params = GenerationParams(temperature=0.0, max_new_tokens=args.max_new_tokens)
        with cancel_on_interrupt() as cancel:
            run = evaluate(manager, examples, variants, params, rag, args.batch_size, _progress, cancel,
                           name=args.name or "", dataset=str(Path(args.data).expanduser()))
    except KeyboardInterrupt:  # a second Ctrl-C, or one while the model loads
        print("\n[cancelled]", file=sys.stderr)
        return 130
    folder = store.save_run(run, workspace) if run.results else None
    if args.json:
        print(json.dumps({"name": run.name, "examples": len(run.results), "cancelled": run.cancelled,
                          "aggregates": run.aggregates, "folder": str(folder) if folder else None}, indent=2))
    else:
        print(scorecard(run))
        print(f"Saved to {folder}" if folder else "Nothing finished, so nothing was saved.")
    if run.cancelled:
        print("[cancelled]", file=sys.stderr)
        return 130
    return 0


def _progress(done: int, total: int) -> None:
    print(f"evaluating: {done}/{total} answers", file=sys.stderr)


def scorecard(run: EvaluationRun) -> str:
    """Every metric (rows) for every variant (columns); '-' where a metric does not apply (no facts, no schema)."""
    from studio.core.evaluation.metrics import SCORECARD_METRICS, format_score

    names = [v.name for v in run.variants]
    rows = [[m, *(format_score(run.aggregates[n].get(m)) for n in names)] for m in SCORECARD_METRICS
            if any(m in run.aggregates[n] for n in names)]
    header = ["metric", *names]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    n = len(run.results)
    lines = [f"{run.name} · {run.model} · {n} example{'' if n == 1 else 's'}" + (" (cancelled)" if run.cancelled else "")]
    for row in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)
