"""Live samples: at each evaluation the model being trained answers a few fixed validation prompts.

A loss curve says the model fits; reading what it writes says whether it answers well. The worker
appends one line per evaluation to `runs/<name>/samples.jsonl`:

    {"step": 20, "epoch": 0.5, "samples": [{"prompt": <last user message>, "answer": <generated>,
                                            "reference": <the example's assistant text>}, ...]}

The prompts are those of the first (up to) three validation examples: their messages before the last
assistant turn, rendered with the tokenizer's chat template and a generation prompt, answered greedily.

Importing this module imports no ML library (the UI reads samples through it); SampleCallback, which
writes them, is in callbacks.py. The file itself belongs to the run folder (RunDir in studio/storage/runs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.storage.runs import RunDir

SAMPLE_COUNT = 3


@dataclass(frozen=True)
class SamplePrompt:
    messages: list[dict[str, str]]  # the conversation up to (not including) the answer to write
    prompt: str  # its last user message, for display
    reference: str  # the assistant text the example holds


def samples_file(run: RunDir) -> Path:
    return run.samples_file


def append_samples(run: RunDir, row: dict[str, Any]) -> None:
    run.append_samples(row)


def read_samples(run: RunDir | str | Path) -> list[dict[str, Any]]:
    """Every complete line of the run's samples.jsonl, oldest first; [] when there is none yet."""
    return (run if isinstance(run, RunDir) else RunDir(Path(run))).read_samples()


def sample_prompts(conversations: Sequence[Sequence[dict[str, str]]], count: int = SAMPLE_COUNT) -> list[SamplePrompt]:
    """The prompts of the first `count` conversations that end their prompt with a user turn and have an answer."""
    prompts = []
    for messages in conversations:
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
        users = [m for m in messages[:last] if m.get("role") == "user"]
        if last <= 0 or not users:
            continue
        prompts.append(SamplePrompt([dict(m) for m in messages[:last]], users[-1]["content"], messages[last]["content"]))
        if len(prompts) == count:
            break
    return prompts


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[SamplePrompt], max_new_tokens: int) -> list[str]:
    """Greedy answers of `model` as it is now (eval mode, no gradients; its train/eval mode is restored after)."""
    import torch
    from transformers import GenerationConfig

    eos = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                              eos_token_id=eos if eos is not None else tokenizer.eos_token_id, pad_token_id=pad)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers = []
    try:
        with torch.no_grad():
            for item in prompts:  # one at a time: no padding side to get right, and only 2-3 prompts
                ids = tokenizer.apply_chat_template(item.messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt")
                input_ids = ids["input_ids"].to(device)
                out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                     generation_config=config)
                answers.append(tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return answers
