"""Settings of the Training tab's data side: one source for defaults, help text, ranges and validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from studio.config import SavedParams, check_choice, check_range, param_field

TruncationPolicy = Literal["truncate", "drop"]


@dataclass
class DataParams(SavedParams):
    """How a chat dataset is checked, cut to length, split and decontaminated."""

    max_length: int = param_field(1024, "Longest training example in tokens (chat template included). Longer examples "
                                  "are truncated or dropped, as the policy says.", min=16, max=131072, step=16)
    truncation: str = param_field("truncate", "truncate = keep the first max_length tokens of a long example; "
                                  "drop = leave long examples out of training.")
    train_on_prompt: bool = param_field(False, "Off = the loss covers only the assistant replies (recommended); "
                                        "on = every token, prompts and system prompt included.")
    val_ratio: float = param_field(0.1, "Share of the examples held out for validation when no validation file is given "
                                   "(0 = no validation).", min=0.0, max=0.5, step=0.01)
    seed: int = param_field(42, "Random seed of the train/validation split: the same seed gives the same split.",
                            min=0, max=2**31 - 1, step=1)
    near_duplicates: bool = param_field(True, "Also warn about examples whose text is the same once case, spacing "
                                        "and punctuation are ignored.")
    decontam_ngram: int = param_field(8, "Word n-gram size of the decontamination check: a training example sharing "
                                      "n consecutive words with an evaluation example is reported.", min=3, max=50, step=1)
    max_suggested_length: int = param_field(4096, "Upper bound on the suggested max_length (set it to the model's "
                                            "context length).", min=64, max=131072, step=64)

    def __post_init__(self) -> None:
        for name in ("max_length", "val_ratio", "seed", "decontam_ngram", "max_suggested_length"):
            check_range(DataParams, self, name)
        check_choice(self, "truncation", get_args(TruncationPolicy))
        self.max_length, self.seed = int(self.max_length), int(self.seed)
        self.decontam_ngram, self.max_suggested_length = int(self.decontam_ngram), int(self.max_suggested_length)
        self.val_ratio = float(self.val_ratio)
        self.train_on_prompt, self.near_duplicates = bool(self.train_on_prompt), bool(self.near_duplicates)
