"""`studio data check FILE [--model M] [--eval FILE]`: the Training tab's dataset report in the terminal.

Exit codes: 0 = no errors (warnings allowed), 1 = the file has line errors (or overlaps the eval set),
2 = the file cannot be read at all (missing, empty, wrong type), as for every user error.
"""

from __future__ import annotations

import argparse
from typing import Any

from studio.config import field_help


def add_data_parser(sub: Any) -> None:
    from studio.core.datasets import DataParams

    data = sub.add_parser("data", help="Check a training dataset.", description="Check a training dataset.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="Validate a .jsonl/.json chat dataset and print its report.",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("file", help="The dataset (.jsonl or .json): messages, ShareGPT, Alpaca or prompt/completion.")
    check.add_argument("--model", help="Tokenizer (hub id or folder) for token lengths and the chat template check.")
    defaults = DataParams()
    check.add_argument("--max-length", type=int, default=defaults.max_length,
                       help=f"{field_help(DataParams, 'max_length')} (default {defaults.max_length})")
    check.add_argument("--policy", choices=("truncate", "drop"), default=defaults.truncation,
                       help=field_help(DataParams, "truncation"))
    check.add_argument("--eval", dest="eval_file", help="An evaluation JSONL to check for n-gram overlap (decontamination).")
    check.add_argument("--ngram", type=int, default=defaults.decontam_ngram,
                       help=f"{field_help(DataParams, 'decontam_ngram')} (default {defaults.decontam_ngram})")


def run_data(args: argparse.Namespace) -> int:
    from studio.core.datasets import DataParams, check_contamination, check_dataset
    from studio.core.training.planning import load_tokenizer

    params = DataParams(max_length=args.max_length, truncation=args.policy, decontam_ngram=args.ngram)
    tokenizer = load_tokenizer(args.model) if args.model else None
    report = check_dataset(args.file, tokenizer, params)
    print(report.text())
    failed = report.has_errors
    if args.eval_file:
        overlap = check_contamination(report.examples, args.eval_file, params.decontam_ngram)
        print()
        print(overlap.text())
        failed = failed or overlap.count > 0
    return 1 if failed else 0
