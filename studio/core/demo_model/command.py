"""`studio demo-model build`: rebuild the offline demo model from nothing but this repository.

    studio demo-model build [--out assets/models/studio-demo] [--seed S] [--steps N] [--copy-steps N] [--minutes M]
                            [--copy-circuit] [--set NAME=VALUE ...]

Progress (step, loss, learning rate, speed, ETA) goes to stderr. The first Ctrl-C stops training and
leaves the existing model folder untouched (exit 130); a second one aborts at once.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from studio.errors import StudioError


def add_demo_model_parser(sub: Any) -> None:
    from studio.core.demo_model.build import DEFAULT_OUT
    from studio.core.demo_model.train import DemoParams

    defaults = DemoParams()
    text = "Build the tiny offline studio-demo model (synthetic data, CPU, no downloads)."
    parser = sub.add_parser("demo-model", help=text, description=text)
    actions = parser.add_subparsers(dest="demo_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help=text, description=text)
    build.add_argument("--out", default=str(DEFAULT_OUT), help=f"Model folder to write (default {DEFAULT_OUT}).")
    build.add_argument("--seed", type=int, default=defaults.seed, help=f"Seed (default {defaults.seed}).")
    build.add_argument("--steps", type=int, default=defaults.steps, help=f"Training steps (default {defaults.steps}).")
    build.add_argument("--copy-steps", dest="copy_steps", type=int, default=defaults.copy_steps,
                       help=f"Steps of the second, copying phase (default {defaults.copy_steps}; 0 = none).")
    build.add_argument("--minutes", type=float, help="Stop training after this many minutes and save what was learned "
                                                     "(the result then depends on the machine's speed).")
    build.add_argument("--threads", type=int, default=defaults.threads, help=f"CPU threads (default {defaults.threads}).")
    build.add_argument("--copy-circuit", dest="copy_circuit", action="store_true", help=circuit_help())
    build.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                       help="Any other build parameter (repeatable; applied over --copy-circuit's preset), e.g. "
                            "--set grounded=0.4 --set copy_boost=2; the names are DemoParams' fields "
                            "(studio/core/demo_model/train.py).")
    build.add_argument("--small", action="store_true", help="A 2-layer, 64-wide model with a 1,000-token vocabulary "
                                                            "(seconds; for tests, not for use).")


def circuit_help() -> str:
    """--copy-circuit's help, from the preset itself (a hand-written copy went stale when the preset changed)."""
    from studio.core.demo_model.train import CIRCUIT

    c = CIRCUIT  # argparse %-formats help texts: a literal percent sign is written %%
    return (f"Experimental: start from weights that already copy from the context ({c['heads']} heads of width "
            f"{c['head_dim']}, RoPE base {c['rope_theta']:g}, copy heads that compare {c['copy_span']} tokens"
            + (", prefer earlier matches" if c.get("primacy") else "")
            + (" and skip the model's own replies" if c.get("skip_own_reply") else "")
            + f", {round(c['grounded'] * 100)}%% of chats over the RAG prompt, {c['steps']} steps unless --steps is given; "
            "see studio/core/demo_model/circuit.py).")


def params_from_args(args: argparse.Namespace) -> Any:
    from studio.core.demo_model.train import DemoParams

    for name in ("steps", "threads"):
        if getattr(args, name) < 1:
            raise StudioError(f"--{name} should be at least 1, got {getattr(args, name)}.", f"give a positive --{name}.")
    if args.copy_steps < 0:
        raise StudioError(f"--copy-steps should be 0 or more, got {args.copy_steps}.", "give 0 or a positive --copy-steps.")
    if args.minutes is not None and args.minutes <= 0:
        raise StudioError(f"--minutes should be above 0, got {args.minutes}.", "give a positive number of minutes, or drop it.")
    small = {"vocab_size": 1000, "hidden_size": 64, "layers": 2, "heads": 4, "intermediate_size": 128,
             "chats_per_step": 4, "warmup_steps": 1} if args.small else {}
    from studio.core.demo_model.train import CIRCUIT

    circuit = {k: v for k, v in CIRCUIT.items() if k != "steps"} if getattr(args, "copy_circuit", False) else {}
    steps = CIRCUIT["steps"] if circuit and args.steps == DemoParams().steps else args.steps
    return DemoParams(seed=args.seed, steps=steps, copy_steps=args.copy_steps, minutes=args.minutes, threads=args.threads,
                      **{**circuit, **small, **parse_settings(getattr(args, "settings", []))})


# Parameters with a flag of their own: --set does not take them, so a command line never gives one twice.
FLAGGED = ("seed", "steps", "copy_steps", "minutes", "threads")


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`--set NAME=VALUE` items as DemoParams keyword arguments, each value read as its field's type (config.coerce;
    the ranges are DemoParams' own checks). Raises StudioError naming the item that is wrong and what would be right."""
    from dataclasses import fields

    from studio.config import coerce
    from studio.core.demo_model.train import DemoParams

    names = {f.name for f in fields(DemoParams)} - set(FLAGGED)
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip().replace("-", "_"), text.strip()
        if not sep or not name or not text:
            raise StudioError(f"--set {item!r} is not NAME=VALUE.", "write it like --set grounded=0.5.")
        if name in FLAGGED:
            raise StudioError(f"--set {item!r}: {name} has its own flag.", f"use --{name.replace('_', '-')} instead.")
        if name not in names:
            raise StudioError(f"--set {item!r}: there is no build parameter {name!r}.",
                              "pick one of: " + ", ".join(sorted(names)) + ".")
        out[name] = coerce(DemoParams, name, text, f"--set {item!r}")
    return out


def command_line(args: argparse.Namespace) -> str:
    """The command that rebuilds this model, for its README (the output folder is where it is read)."""
    parts = ["studio demo-model build", f"--seed {args.seed}", f"--steps {args.steps}", f"--copy-steps {args.copy_steps}",
             f"--threads {args.threads}"]
    if args.minutes is not None:
        parts.append(f"--minutes {args.minutes:g}")
    if getattr(args, "copy_circuit", False):
        parts.append("--copy-circuit")
    parts += [f"--set {shlex.quote(item)}" for item in getattr(args, "settings", [])]  # checked by params_from_args
    if args.small:
        parts.append("--small")
    return " ".join(parts)


def run_demo_model(args: argparse.Namespace) -> int:
    from studio.cli_rag import cancel_on_interrupt
    from studio.core.demo_model.build import build

    params = params_from_args(args)
    try:
        with cancel_on_interrupt() as cancel:
            result = build(args.out, params, log=lambda line: print(line, file=sys.stderr, flush=True), cancel=cancel,
                           command=command_line(args))
    except KeyboardInterrupt:
        print("\n[cancelled] nothing was written", file=sys.stderr)
        return 130
    if result is None:
        print(f"[cancelled] {args.out} was left as it was", file=sys.stderr)
        return 130
    print(result.path)
    return 0
