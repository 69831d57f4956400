"""Before a run starts: check the data with the run's tokenizer, preview what is trained, estimate what fits.

What the Training tab shows before the user presses Start, as plain Python (the UI only renders it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.datasets import DataParams, check_contamination, check_dataset
from studio.core.datasets.report import DatasetReport
from studio.errors import StudioError

GIB = 1024**3


@dataclass
class DataCheck:
    """A dataset's report, its overlap with an evaluation file (if given), and the tokenizer used."""

    report: DatasetReport
    model: str
    contamination: Any = None  # ContaminationReport, when an eval file was given
    notes: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def load_tokenizer(model: str) -> Any:
    """The tokenizer of `model` (hub id in the local cache, or folder), cached; StudioError when it cannot load."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except Exception as err:  # noqa: BLE001  (hub, OS and format errors all mean "cannot use this tokenizer")
        raise StudioError(f"The tokenizer of {model!r} could not be loaded ({type(err).__name__}: {err}).",
                          "give a local model folder or a hub id that is in the local cache.") from None


def check_data(path: str | Path, model: str, params: DataParams | None = None,
               eval_path: str | Path | None = None) -> DataCheck:
    """Validate `path` with `model`'s tokenizer (lengths, chat template), and check overlap with `eval_path`.

    Raises StudioError for a file that cannot be read at all or a model whose tokenizer cannot load.
    """
    if not (model or "").strip():
        raise StudioError("No base model picked for the run.", "pick the model to fine-tune first: its tokenizer measures "
                          "the examples and renders them through its chat template.")
    report = check_dataset(path, load_tokenizer(model.strip()), params or DataParams())
    check = DataCheck(report, model.strip())
    if eval_path:
        check.contamination = check_contamination(report.examples, eval_path, (params or DataParams()).decontam_ngram)
    return check


def preview(check: DataCheck, index: int, train_on_prompt: bool = False) -> tuple[list[tuple[str, bool]], list[bool]]:
    """Example `index` (0-based among the valid ones) as (text, trained) segments, and per assistant turn whether
    its end-of-turn token comes from the chat template. StudioError when there is no such example."""
    from studio.core.datasets import check_eos
    from studio.core.datasets import preview as segments

    examples = check.report.examples
    if not examples:
        raise StudioError("The dataset has no valid example to preview.", "fix the errors listed in the report.")
    if not 0 <= index < len(examples):
        raise StudioError(f"There is no example {index + 1}: the dataset has {len(examples)}.",
                          f"pick a number from 1 to {len(examples)}.")
    tokenizer = load_tokenizer(check.model)
    messages = examples[index].messages
    return segments(messages, tokenizer, train_on_prompt), check_eos(messages, tokenizer)


def fit_verdict(total_bytes: float, memory: dict[str, int]) -> tuple[bool, str]:
    """Whether an estimated peak fits the detected device (GPU memory when there is a GPU, else free RAM)."""
    if "cuda_total" in memory:
        room, where = memory["cuda_total"] - memory.get("cuda_reserved", 0), "free GPU memory"
    else:
        room, where = memory["system_available"], "free system RAM"
    fits = total_bytes <= 0.9 * room
    verdict = (f"fits: about {total_bytes / GIB:.2f} GiB of {room / GIB:.2f} GiB {where}" if fits else
               f"will not fit: about {total_bytes / GIB:.2f} GiB needed, {room / GIB:.2f} GiB {where}. Lower the batch "
               "size or max length, turn on gradient checkpointing, or use QLoRA (4-bit base).")
    return fits, verdict
