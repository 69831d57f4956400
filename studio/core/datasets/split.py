"""Train/validation split: a seeded random share of the examples, or a separate validation file."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from studio.core.datasets.params import DataParams
from studio.core.datasets.report import DatasetReport, Example
from studio.errors import ConfigError


@dataclass
class DataSplit:
    train: list[Example]
    validation: list[Example]
    source: str  # how the validation set was made: "10% of data.jsonl (seed 42)" or the validation file's name
    leaked: list[int] = field(default_factory=list)  # validation-file lines whose example is also in the training file


def split_examples(examples: Sequence[Example], val_ratio: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, validation), disjoint, each in file order; the same examples, ratio and seed give the same split.

    A ratio above 0 holds out at least one example and leaves at least one for training (when there are two or more).
    """
    if not 0 <= val_ratio < 1:
        raise ConfigError(f"`val_ratio` should be at least 0 and below 1, got {val_ratio!r}.", "use e.g. 0.1.")
    count = len(examples)
    held = round(count * val_ratio)
    if val_ratio > 0 and count >= 2:
        held = min(max(held, 1), count - 1)
    elif count < 2:
        held = 0
    order = list(range(count))
    random.Random(seed).shuffle(order)
    chosen = set(order[:held])
    return ([e for i, e in enumerate(examples) if i not in chosen], [e for i, e in enumerate(examples) if i in chosen])


def make_split(train: DatasetReport, params: DataParams, validation: DatasetReport | None = None) -> DataSplit:
    """The split training uses: `validation`'s examples when a validation file was checked, else `params.val_ratio`
    of `train` (seeded by `params.seed`). With a file, validation examples that also occur in the training file
    are listed in `leaked` (their scores would flatter the model)."""
    if validation is None:
        kept, held = split_examples(train.examples, params.val_ratio, params.seed)
        return DataSplit(kept, held, f"{params.val_ratio:.0%} of {train.path.name} (seed {params.seed})")
    seen = {_key(e) for e in train.examples}
    leaked = [e.line for e in validation.examples if _key(e) in seen]
    return DataSplit(list(train.examples), list(validation.examples), validation.path.name, leaked)


def _key(example: Example) -> str:
    return json.dumps(example.messages, ensure_ascii=False)
