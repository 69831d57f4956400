"""`studio adapters ...`: the workspace's adapters from the terminal.

    studio adapters list [--all] [--json]
    studio adapters merge ADAPTER [--out DIR] [--base MODEL] [--dtype auto|fp32|bf16|fp16]
    studio adapters delete ADAPTER

ADAPTER is a name from `list` (a run's name, or a folder under adapters/) or an adapter folder.
A merged model goes to models/<adapter>-merged in the workspace unless --out says otherwise.
Exit codes: 0 done; 2 a user error (`error:` and `fix:` lines on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, get_args

from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.core.adapters import AdapterInfo
    from studio.storage.workspace import Workspace


def add_adapters_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `adapters` subcommand to `sub` (the subparsers of the `studio` parser)."""
    from studio.cli import workspace_option
    from studio.core.adapters import Dtype

    adapters = sub.add_parser("adapters", help="List, merge or delete the workspace's adapters.",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = adapters.add_subparsers(dest="adapters_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="Adapters in adapters/ and runs/*/adapter, with base, type, rank and size.")
    listing.add_argument("--json", action="store_true", help="Print a JSON list instead of the table.")
    listing.add_argument("--all", action="store_true", help="Also show folders under adapters/ that are not usable, and why.")

    merge = actions.add_parser("merge", help="Merge an adapter into its base and save a standalone model folder.")
    merge.add_argument("adapter", metavar="ADAPTER", help="A name from `studio adapters list`, or an adapter folder.")
    merge.add_argument("--out", help="Output folder (must not exist, or be empty). Default: models/<adapter>-merged in the workspace.")
    merge.add_argument("--base", help="Base model (hub id or folder). Default: the one the adapter's config names.")
    merge.add_argument("--dtype", choices=get_args(Dtype), default="auto",
                       help="Precision to merge in: auto = fp32 on CPU, bf16 on a GPU that supports it. Never 4-bit.")

    delete = actions.add_parser("delete", help="Delete an adapter folder (for a run, only its adapter/; the run stays).")
    delete.add_argument("adapter", metavar="ADAPTER", help="A name from `studio adapters list`, or an adapter folder.")
    for parser in (listing, merge, delete):
        workspace_option(parser)
    return adapters


def run_adapters(args: argparse.Namespace) -> int:
    """Run `studio adapters ACTION`; returns the exit code."""
    try:
        workspace = _workspace(args)
        if args.adapters_command == "list":
            return _list(workspace, args.json, args.all)
        if args.adapters_command == "merge":
            return _merge(workspace, args)
        return _delete(workspace, args.adapter)
    except StudioError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.fix:
            print(f"fix: {err.fix}", file=sys.stderr)
        return 2


def _workspace(args: argparse.Namespace) -> Workspace:
    from studio.config import Settings
    from studio.storage.workspace import Workspace

    return Workspace(Settings.resolve({"workspace": getattr(args, "workspace", None)}).workspace)


def _list(workspace: Workspace, as_json: bool, include_invalid: bool) -> int:
    from studio.core.adapters import list_adapters

    adapters = list_adapters(workspace, include_invalid=include_invalid)
    if as_json:
        print(json.dumps([a.to_dict() for a in adapters], indent=1))
        return 0
    if not adapters:
        print(f"No adapters in {workspace.adapters_dir} or {workspace.runs_dir}.")
        return 0
    for adapter in adapters:
        print(adapter_line(adapter))
    return 0


def adapter_line(a: AdapterInfo) -> str:
    """One line per adapter: name, where from, type and rank, base, size, date, and a run's method and losses."""
    if a.problem:
        return f"{a.name}  [{a.source}]  not usable: {a.problem}"
    rank = f" r={a.r}" if a.r is not None else ""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(a.created))
    parts = [f"{a.name}  [{a.source}]", f"{a.peft_type or '?'}{rank}", f"base {a.base_model or '?'}",
             f"{a.size_bytes / 2**20:,.1f} MiB", when]
    if a.source == "run":
        parts.append(" ".join(x for x in (a.method, a.run_state) if x) or "run")
        losses = [f"{k} {a.metrics[k]:.4f}" for k in ("loss", "eval_loss") if isinstance(a.metrics.get(k), (int, float))]
        parts += losses
    return "  ·  ".join(parts)


def _merge(workspace: Workspace, args: argparse.Namespace) -> int:
    from studio.core.adapters import default_export_dir, find_adapter, merge_and_export

    adapter = find_adapter(workspace, args.adapter)
    out = args.out or default_export_dir(workspace, adapter.name)
    done = merge_and_export(adapter.path, out, base_model=args.base, dtype=args.dtype,
                            progress=lambda f, msg: print(f"[{f:4.0%}] {msg}", file=sys.stderr))
    print(done)
    return 0


def _delete(workspace: Workspace, name_or_path: str) -> int:
    from studio.core.adapters import delete_adapter, find_adapter

    deleted = delete_adapter(workspace, find_adapter(workspace, name_or_path).path)
    print(f"Deleted {deleted}")
    return 0
