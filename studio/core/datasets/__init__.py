"""The data side of fine-tuning: chat datasets read, checked, rendered for training, split and decontaminated.

reading          .jsonl / .json (JSON lines or one array) → values with line numbers; bad encoding per line
formats          detect messages / ShareGPT / Alpaca / prompt-completion and normalise to chat messages
validation       check_dataset → DatasetReport: per-line errors, duplicates, lengths, token statistics
report           Issue, Example, DatasetStats, LengthStats, DatasetReport (with .text() for a terminal)
tokenization     tokenize_example / preview / check_eos through the model's chat template, labels masked
split            seeded train/validation split, or a separate validation file (with a leak check)
decontamination  n-gram overlap between the training examples and an evaluation set
params           DataParams (defaults, help, ranges, validation)
"""

from studio.core.datasets.decontamination import ContaminationReport, Overlap, check_contamination
from studio.core.datasets.formats import FORMATS, detect_format, to_messages
from studio.core.datasets.params import DataParams
from studio.core.datasets.reading import check_path
from studio.core.datasets.report import FORMAT_NAMES, DatasetReport, DatasetStats, Example, Issue, LengthStats
from studio.core.datasets.split import DataSplit, make_split, split_examples
from studio.core.datasets.tokenization import (
    IGNORE_INDEX,
    ChatTemplateError,
    TokenizedExample,
    check_eos,
    preview,
    tokenize_dataset,
    tokenize_example,
)
from studio.core.datasets.validation import check_dataset, normalise_text, suggest_max_length

__all__ = [
    "FORMATS", "FORMAT_NAMES", "IGNORE_INDEX", "ChatTemplateError", "ContaminationReport", "DataParams", "DataSplit",
    "DatasetReport", "DatasetStats", "Example", "Issue", "LengthStats", "Overlap", "TokenizedExample", "check_contamination",
    "check_dataset", "check_eos", "check_path", "detect_format", "make_split", "normalise_text", "preview",
    "split_examples", "suggest_max_length", "to_messages", "tokenize_dataset", "tokenize_example",
]
