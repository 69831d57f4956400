"""Pre-train the demo model from scratch on the synthetic chats: one CPU loop, deterministic per seed.

Each optimizer step draws `chats_per_step` fresh chats (nothing is repeated), sorts them by length and
splits them into micro-batches of at most `tokens_per_micro_batch` padded tokens, so short and long
chats do not pad each other. The loss covers only the assistant replies, end token included.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from studio.config import check_choice, check_range, param_field
from studio.core.demo_model.circuit import COPY_GAIN, HEAD_GAIN, SPAN
from studio.core.demo_model.corpus import GROUNDED, JSON_SHARE, QUOTES, Mix
from studio.errors import ConfigError


# Fields that only change the copying circuit: a build without it refuses any of them set.
CIRCUIT_ONLY = ("copy_span", "copy_gain", "copy_boost", "primacy", "copy_from", "skip_own_reply", "stop_at_brackets",
                "mute_passage_ends", "head_gain", "pause_after_json")


@dataclass
class DemoParams:
    """How the demo model is built. Same params and seed (and thread count) = the same weights."""

    seed: int = param_field(0, "Seed of the corpus, the initialisation and the training order.", min=0, max=2**31 - 1, step=1)
    steps: int = param_field(450, "Optimizer steps; each sees `chats_per_step` new chats.", min=1, max=1_000_000, step=1)
    # 250 copy steps after the 450 were tried and did not make the model copy (see the model's README), so
    # the default build is the single phase that made the committed model.
    copy_steps: int = param_field(0, "Second phase: steps on chats whose passages are partly scrambled, so that "
                                  "quoting them takes copying (see corpus.scramble); 0 = none.", min=0, max=1_000_000, step=1)
    scrambled: float = param_field(0.0, "Share of passages with `scramble_rate` of their words swapped for random "
                                   "ones, so that quoting them takes copying (see corpus.scramble).", min=0.0, max=1.0, step=0.05)
    scramble_rate: float = param_field(0.33, "Share of a scrambled passage's words that are swapped.", min=0.0, max=1.0,
                                       step=0.05)
    english_words: bool = field(default=False, metadata={"help": "Scrambled passages swap words for everyday English "
                                                                  "ones, which the tokenizer also learns (see corpus.english_words); "
                                                                  "off = the corpus's own words."})
    quote: str = param_field("passage", "What grounded replies quote: passage [1]'s text (passage), the sentence that "
                             "answers and the next (sentence), or passage [1] from its [1] (source) line (block); "
                             "see corpus.QUOTES.")
    rich_passages: float = param_field(0.0, "Share of passages that are longer and laid out like real help-centre "
                                       "chunks: bold labels, PDF pages, bulleted lists (see corpus._rich).",
                                       min=0.0, max=1.0, step=0.05)
    grounded: float = param_field(GROUNDED, "Share of chats that are the RAG prompt over passages (2 in 15 of them asking "
                                  "for JSON); the rest is support talk without context (see corpus.chat).",
                                  min=0.0, max=1.0, step=0.05)
    json_share: float = param_field(JSON_SHARE, "Share of the grounded chats whose question asks for a JSON object (the "
                                    "quote then goes into its first key, JSON-escaped; see corpus.chat).",
                                    min=0.0, max=1.0, step=0.05)
    json_unnamed: float = param_field(0.0, "Share of the JSON requests (grounded or not) that name no keys (\"Reply in "
                                      "JSON.\"); their replies use corpus.DEFAULT_KEYS, so the model learns one JSON "
                                      "shape of its own besides taking keys from the question.", min=0.0, max=1.0,
                                      step=0.05)
    escape_tokens: bool = field(default=False, metadata={"help": "JSON's escapes of a line break and a double quote are "
                                                                  "one token each, as the characters they stand for are, so "
                                                                  "the copy heads keep their place in a quote written into "
                                                                  "a JSON string (see build.JSON_ESCAPES)."})
    symbol_tokens: bool = field(default=False, metadata={"help": "The help centre's symbols beyond ASCII (£ – · ° − • €) "
                                                                  "are one token each, alone and after a space, so a quote "
                                                                  "cannot drop one of their bytes (see build.SYMBOLS); "
                                                                  "the corpus then prices in £ too and has frost below zero."})
    chats_per_step: int = param_field(16, "Chats per optimizer step.", min=1, max=1024, step=1)
    tokens_per_micro_batch: int = param_field(6144, "Most padded tokens in one forward pass.", min=256, max=65536, step=256)
    max_length: int = param_field(1400, "Chats longer than this many tokens are cut (the default RAG prompt fits).",
                                  min=64, max=4096, step=64)
    learning_rate: float = param_field(3e-3, "Peak learning rate (AdamW, cosine decay to a tenth).", min=1e-5, max=1e-1, step=1e-4)
    warmup_steps: int = param_field(30, "Steps of linear learning-rate warm-up.", min=0, max=10_000, step=1)
    vocab_size: int = param_field(6000, "Byte-level BPE vocabulary size.", min=512, max=65536, step=256)
    hidden_size: int = param_field(256, "Model width.", min=32, max=4096, step=32)
    layers: int = param_field(4, "Transformer blocks.", min=1, max=48, step=1)
    heads: int = param_field(8, "Attention heads.", min=1, max=64, step=1)
    head_dim: int = param_field(32, "Width of one attention head (wide heads compare tokens reliably, see circuit).",
                                min=8, max=512, step=8)
    rope_theta: float = param_field(10000.0, "RoPE base. A large base leaves most frequency pairs slow, which the "
                                    "copying circuit compares tokens on (see circuit).", min=1e3, max=1e20, step=1.0)
    copy_circuit: bool = field(default=False, metadata={"help": "Start from weights that already copy from the "
                                                                 "context (see circuit; use the CIRCUIT shape); off = plain "
                                                                 "random init, as the committed model was built."})
    copy_span: int = param_field(SPAN, "Tokens the circuit's copy heads compare: the current one and those before it "
                                 "(see circuit.wire).", min=1, max=8, step=1)
    copy_gain: float = param_field(COPY_GAIN, "How loudly the circuit's copy heads start out (the scale of their output, "
                                   "which then trains; see circuit.wire).", min=0.0, max=100.0, step=0.5)
    copy_boost: float = param_field(1.0, "After training, the circuit's copy heads' output is scaled by this factor "
                                    "(see circuit.boost): trained layers no longer outvote a quote now and then; 1 = "
                                    "leave as trained.", min=0.0, max=100.0, step=0.5)
    primacy: float = param_field(0.0, "Of two equally good matches the copy heads prefer the earlier, by this many "
                                 "logits per 2,000 positions (a reply quotes passage [1], which comes first); 0 = no "
                                 "preference (see circuit.wire).", min=0.0, max=100.0, step=0.5)
    copy_from: str = param_field("prompt", "What the circuit's copy heads may quote (with skip_own_reply): the whole "
                                 "prompt (prompt), or only the retrieved passages, between the RAG prompt's \"Context\" "
                                 "and \"Question\" (context), so that without RAG nothing is copied (see circuit.wire).")
    skip_own_reply: bool = field(default=False, metadata={"help": "The circuit's copy heads never copy from an "
                                                                  "assistant turn, so the model cannot loop on its own words "
                                                                  "(see circuit.wire; the tokenizer learns the role names as tokens)."})
    stop_at_brackets: bool = field(default=False, metadata={"help": "The circuit's copy heads never copy a token "
                                                                     "with \"[\" in it (needs skip_own_reply), so a quote "
                                                                     "of passage [1] stops where the next passage's \"[2] (\" "
                                                                     "header begins, and the model decides how to end "
                                                                     "(see circuit.wire's nocopy_tokens)."})
    mute_passage_ends: bool = field(default=False, metadata={"help": "What follows a retrieved passage in the RAG "
                                                                      "prompt (a token with \"[\" in it, as in the next "
                                                                      "passage's \"[2] (\", and \"Question\") is copied as "
                                                                      "nothing: a quote of passage [1] falls silent where the "
                                                                      "passage ends, and the model decides how to end (see "
                                                                      "circuit.wire's mute_tokens)."})
    pause_after_json: bool = field(default=False, metadata={"help": "At a JSON token that a key follows ({\" and the "
                                                                     "tokens ending in \", or ],) and at the next two tokens "
                                                                     "the circuit's copy heads copy nothing, so the model "
                                                                     "writes the key itself instead of pasting what follows "
                                                                     "the same tokens in the prompt (see circuit.wire's "
                                                                     "pause_tokens)."})
    head_gain: float = param_field(HEAD_GAIN, "The circuit's output head is the embeddings (their norms held) times this "
                                   "while training: it caps how far apart the logits of the model's own words can be, "
                                   "so a low gain starves everything it says without copying (see circuit.wire).",
                                   min=0.5, max=100.0, step=0.5)
    intermediate_size: int = param_field(512, "MLP width.", min=32, max=16384, step=32)
    stream_scale: float = param_field(0.01, "After training, the residual stream is scaled by this factor without "
                                      "changing what the model computes (see build.scale_stream): a LoRA on the value and "
                                      "up projections then moves it as far as it moves a larger model. 1 = leave as trained.",
                                      min=0.001, max=1.0, step=0.001)
    bf16: bool = field(default=False, metadata={"help": "Run the forward and backward passes under bfloat16 autocast "
                                                       "(the weights and the optimizer stay float32): about 1.3x faster per "
                                                       "step on a CPU with AVX512-BF16, so more steps fit the same minutes; the "
                                                       "copying circuit reads the same (see the README)."})
    threads: int = param_field(1, "CPU threads for torch. One thread keeps the float sums in the same order on every "
                              "machine (so the same seed gives the same weights) and is fastest on a busy CPU.", min=1, max=256, step=1)
    minutes: float | None = field(default=None, metadata={"help": "Stop early after this many minutes (the result then "
                                                          "depends on the machine's speed)."})

    def __post_init__(self) -> None:
        """Every number within its declared range (a bad `--steps` or `--threads` fails here, before a long build)."""
        for f in fields(self):
            if f.metadata.get("min") is not None:
                check_range(DemoParams, self, f.name)
        check_choice(self, "quote", tuple(QUOTES))
        check_choice(self, "copy_from", ("prompt", "context"))
        changed = [f.name for f in fields(self) if f.name in CIRCUIT_ONLY and getattr(self, f.name) != f.default]
        if changed and not self.copy_circuit:
            raise ConfigError(f"{', '.join(f'`{name}`' for name in changed)} change the copying circuit, and this build has none.",
                              "turn on copy_circuit (--copy-circuit), or leave them at their defaults.")
        if self.stop_at_brackets and not self.skip_own_reply:
            raise ConfigError("stop_at_brackets needs the role head that skip_own_reply adds.",
                              "turn on skip_own_reply, or leave stop_at_brackets off.")
        if self.stop_at_brackets and self.mute_passage_ends:
            raise ConfigError("stop_at_brackets and mute_passage_ends both decide what the copy heads do at a \"[\" token.",
                              "choose one of them.")
        if self.copy_from == "context" and not self.skip_own_reply:
            raise ConfigError("copy_from='context' needs the role head that skip_own_reply adds.",
                              "turn on skip_own_reply, or leave copy_from at 'prompt'.")
        if self.minutes is not None and not (isinstance(self.minutes, (int, float)) and self.minutes > 0):
            raise ConfigError(f"`minutes` should be a positive number, got {self.minutes!r}.", "leave it out or give minutes > 0.")
        if self.copy_circuit:
            from studio.core.demo_model.circuit import problem

            reason = problem(self.layers, self.heads, self.head_dim, self.rope_theta, self.copy_span, self.skip_own_reply,
                             self.primacy > 0)
            if reason:
                raise ConfigError(f"This shape cannot hold the copying circuit: {reason}.",
                                  "change the shape, or build without the circuit (copy_circuit=False).")
        if self.hidden_size % self.heads:
            raise ConfigError(f"`hidden_size` {self.hidden_size} is not a multiple of `heads` {self.heads}.",
                              "pick a width that the head count divides.")

    def mix(self) -> Mix:
        """What the build's corpus is made of."""
        return Mix(scrambled=self.scrambled, rate=self.scramble_rate, rich=self.rich_passages, english=self.english_words,
                   quote=self.quote, grounded=self.grounded, json_share=self.json_share, unnamed=self.json_unnamed,
                   symbols=self.symbol_tokens)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The shape the copying circuit needs and the build it was measured with (`studio demo-model build --copy-circuit`):
# an experiment, not the committed model's build yet (see the README's demo model section).
CIRCUIT: dict[str, Any] = {"copy_circuit": True, "heads": 8, "head_dim": 64, "rope_theta": 1e14, "rich_passages": 0.5,
                           "scrambled": 0.7, "scramble_rate": 0.5, "english_words": True, "copy_span": 7,
                           "copy_gain": 16.0, "copy_boost": 4.0, "primacy": 12.0, "quote": "block", "skip_own_reply": True,
                           "grounded": 0.5, "steps": 560}


@dataclass
class StepLog:
    step: int
    steps: int
    loss: float
    learning_rate: float
    elapsed_s: float
    eta_s: float
    tokens: int

    def line(self) -> str:
        return (f"step {self.step}/{self.steps}  loss {self.loss:.3f}  lr {self.learning_rate:.2e}  "
                f"{self.tokens / max(self.elapsed_s, 1e-9):.0f} tok/s  elapsed {_clock(self.elapsed_s)}  ETA {_clock(self.eta_s)}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def encode(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat and labels that are -100 except on the last (assistant) reply."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    # The template ends each turn with "<|im_end|>\n": the reply's label stops at <|im_end|> (EOS).
    ids = ids[:-1] if tokenizer.decode(ids[-1:]) == "\n" else ids
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
    return ids[:max_length], labels[:max_length]


def micro_batches(encoded: list[tuple[list[int], list[int]]], budget: int) -> Iterator[list[tuple[list[int], list[int]]]]:
    """Length-sorted groups whose padded size (longest × count) stays within `budget` tokens."""
    group: list[tuple[list[int], list[int]]] = []
    for item in sorted(encoded, key=lambda e: len(e[0])):
        if group and len(item[0]) * (len(group) + 1) > budget:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def learning_rate(step: int, params: DemoParams) -> float:
    if step < params.warmup_steps:
        return params.learning_rate * (step + 1) / params.warmup_steps
    progress = (step - params.warmup_steps) / max(1, params.steps - params.warmup_steps)
    return params.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def fit(model: Any, tokenizer: Any, chats: Iterator[list[dict[str, str]]], params: DemoParams,
        log: Callable[[StepLog], None] | None = None, cancel: threading.Event | None = None, pins: Any = None) -> int:
    """Train `model` in place; returns the number of steps done (fewer when cancelled or out of minutes).

    `pins` (a `circuit.Pins`) puts the copying circuit's entries back after every step."""
    import torch

    pad = tokenizer.pad_token_id
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=params.learning_rate, betas=(0.9, 0.95))
    model.train()
    started, tokens, smoothed = time.perf_counter(), 0, None
    for step in range(params.steps):
        if cancel is not None and cancel.is_set():
            return step
        if params.minutes is not None and time.perf_counter() - started > params.minutes * 60:
            return step
        encoded = [encode(tokenizer, next(chats), params.max_length) for _ in range(params.chats_per_step)]
        supervised = sum(sum(1 for t in labels if t != -100) for _, labels in encoded)
        total = 0.0
        for group in micro_batches(encoded, params.tokens_per_micro_batch):
            width = max(len(ids) for ids, _ in group)
            ids = torch.full((len(group), width), pad, dtype=torch.long)
            labels = torch.full((len(group), width), -100, dtype=torch.long)
            for row, (x, y) in enumerate(group):
                ids[row, :len(x)], labels[row, :len(y)] = torch.tensor(x), torch.tensor(y)
            # No attention mask: the padding is on the right and attention is causal, so no real token sees a pad
            # (the pads' own outputs carry no label), and without a mask SDPA takes its fused causal kernel: a padded
            # micro-batch 1.3x faster, a whole step 1.07x (float32) and 1.19x (bf16), same hidden states (README).
            # The vocabulary projection only where there is a label: most tokens are prompt, and the head is costly.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=params.bf16):
                hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]
                target = labels[:, 1:]
                keep = target != -100
                logits = model.lm_head(hidden[keep]).float()
            loss = torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum") / max(supervised, 1)
            loss.backward()
            total += loss.item()
            tokens += sum(len(x) for x, _ in group)
        lr = learning_rate(step, params)
        for group_ in optimizer.param_groups:
            group_["lr"] = lr
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if pins is not None:
            pins.restore()
        smoothed = total if smoothed is None else 0.9 * smoothed + 0.1 * total
        if log is not None:
            elapsed = time.perf_counter() - started
            log(StepLog(step + 1, params.steps, smoothed, lr, elapsed, elapsed / (step + 1) * (params.steps - step - 1), tokens))
    model.eval()
    return params.steps
