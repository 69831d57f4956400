"""`studio`: launch the web UI (default) or run the same services headless.

    studio [--host H] [--port P] [--model M] [--precision P] [--workspace DIR] [--share --auth U:P]
    studio chat --model M [--adapter DIR] [--system S] [sampling flags] "prompt"
    studio rag ingest|query|eval|list|docs|delete ...   (see studio/cli_rag.py)
    studio demo-model build [--out DIR] [--seed S] [--steps N] [--minutes M]   (the offline demo model)
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, get_args

from studio.config import Device, GenerationParams, LoadParams, Precision, Settings, field_help
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.core.models import ModelManager

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def model_options(parser: argparse.ArgumentParser, model_required: bool = False, workspace: bool = True) -> None:
    # SUPPRESS, not None: a subcommand's unset flag must not overwrite the same flag given before the
    # subcommand (`studio --workspace W chat ...`); Settings.resolve supplies the defaults.
    unset = argparse.SUPPRESS
    parser.add_argument("--model", required=model_required, default=unset, help=field_help(LoadParams, "model"))
    parser.add_argument("--precision", choices=get_args(Precision), default=unset, help=field_help(LoadParams, "precision"))
    parser.add_argument("--device", choices=get_args(Device), default=unset, help=field_help(LoadParams, "device"))
    parser.add_argument("--double-quant", dest="double_quant", action=argparse.BooleanOptionalAction, default=unset,
                        help=field_help(LoadParams, "double_quant"))
    parser.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true", default=unset,
                        help=field_help(LoadParams, "trust_remote_code"))
    if workspace:
        workspace_option(parser)


def workspace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", default=argparse.SUPPRESS,
                        help="Workspace folder (default: $STUDIO_HOME, else ~/.llm-studio).")


def sampling_options(parser: argparse.ArgumentParser, top_k_flag: str = "--top-k") -> None:
    """Sampling flags (GenerationParams); `top_k_flag` renames --top-k where a command has its own."""
    defaults = GenerationParams()
    for name, kind in (("temperature", float), ("top_p", float), ("top_k", int), ("max_new_tokens", int),
                       ("repetition_penalty", float), ("seed", int)):
        flag = top_k_flag if name == "top_k" else f"--{name.replace('_', '-')}"
        parser.add_argument(flag, dest=name, type=kind, default=getattr(defaults, name),
                            help=f"{field_help(GenerationParams, name)} (default {getattr(defaults, name)})")
    parser.add_argument("--stop", action="append", default=[], help=field_help(GenerationParams, "stop") + " Repeatable.")


def generation_params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, max_new_tokens=args.max_new_tokens,
                            repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop)


def load_model(manager: ModelManager, settings: Settings, adapter_dir: str | None) -> str | None:
    """Load settings.model (and the adapter) with progress on stderr; returns the adapter's name to generate with."""
    print(f"Loading {settings.model}…", file=sys.stderr)
    info = manager.load(settings.load_params())
    adapter = None
    if adapter_dir:
        info = manager.attach_adapter(adapter_dir)
        adapter = info.adapters[-1]
    print(info.summary(), file=sys.stderr)
    return adapter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description="LLM Adaptation Studio: prompting vs RAG vs PEFT on your own data.")
    parser.add_argument("--host", help="Address to serve the UI on (default 127.0.0.1). Non-loopback needs --auth.")
    parser.add_argument("--port", type=int, help="Port of the UI (default 7860).")
    parser.add_argument("--share", action="store_true", default=None, help="Public Gradio share link; needs --auth.")
    parser.add_argument("--auth", help="user:password required to open the UI.")
    parser.add_argument("--chroma-url", dest="chroma_url", help=field_help(Settings, "chroma_url"))
    model_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="Stream one answer in the terminal.", description="Stream one answer in the terminal.")
    model_options(chat, model_required=False)
    chat.add_argument("--adapter", help="A peft adapter folder to apply on top of the model.")
    chat.add_argument("--system", default="", help="System prompt.")
    sampling_options(chat)
    chat.add_argument("prompt", help="The user message.")

    from studio.cli_rag import add_rag_parser  # here, not at the top: cli_rag builds on this module's options

    add_rag_parser(sub)
    from studio.cli_data import add_data_parser

    add_data_parser(sub)
    from studio.cli_train import add_train_parser

    add_train_parser(sub)
    from studio.cli_adapters import add_adapters_parser

    add_adapters_parser(sub)
    from studio.cli_eval import add_eval_parser

    add_eval_parser(sub)
    from studio.core.demo_model.command import add_demo_model_parser

    add_demo_model_parser(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    keys = ("workspace", "host", "port", "model", "precision", "double_quant", "device", "trust_remote_code", "share", "auth",
            "chroma_url")
    return Settings.resolve({k: getattr(args, k, None) for k in keys})


def check_exposure(settings: Settings) -> str | None:
    """Refuse to serve beyond loopback without a password; return the warning to print otherwise."""
    if not settings.is_public:
        return None
    if not settings.auth:
        where = "a public share link" if settings.share else f"host {settings.host}"
        raise StudioError(f"Serving on {where} would let anyone on the network use your models and files.",
                          "add --auth user:password, or serve on 127.0.0.1.")
    return (f"WARNING: the studio is reachable beyond this machine ({'share link' if settings.share else settings.host}); "
            "anyone with the password can run models and read the workspace.")


def run_serve(settings: Settings) -> int:
    warning = check_exposure(settings)
    if warning:
        print(warning, file=sys.stderr)
    from studio.app import main as app_main

    app_main(settings)
    return 0


def run_chat(args: argparse.Namespace, settings: Settings) -> int:
    from studio.core import generation
    from studio.core.models import ModelManager

    if not settings.model:
        raise StudioError("No model to chat with.", "pass --model <hub id or folder> (or set STUDIO_MODEL).")
    params = generation_params(args)
    manager = ModelManager()
    adapter = load_model(manager, settings, args.adapter)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [{"role": "user", "content": args.prompt}]
    cancel = threading.Event()
    stream = generation.stream(manager, messages, params, adapter=adapter, cancel=cancel)
    try:
        for event in stream:
            if isinstance(event, generation.Chunk):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            else:
                print(file=sys.stdout)
                print(event.stats.line(), file=sys.stderr)
    except KeyboardInterrupt:
        cancel.set()
        stream.close()
        print("\n[cancelled]", file=sys.stderr)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "chat":
            return run_chat(args, settings)
        if args.command == "rag":
            from studio.cli_rag import run_rag

            return run_rag(args, settings)
        if args.command == "eval":
            from studio.cli_eval import run_eval

            return run_eval(args, settings)
        if args.command == "demo-model":
            from studio.core.demo_model.command import run_demo_model

            return run_demo_model(args)
        if args.command == "adapters":
            from studio.cli_adapters import run_adapters

            return run_adapters(args)
        if args.command == "train":
            from studio.cli_train import run_train

            return run_train(args)
        if args.command == "data":
            from studio.cli_data import run_data

            return run_data(args)
        return run_serve(settings)
    except StudioError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.fix:
            print(f"fix: {err.fix}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
