"""Build the offline `studio-demo` model: tokenizer → random-init Llama → pre-train on synthetic chats → save.

`build()` writes a Hugging Face folder that AutoTokenizer/AutoModelForCausalLM load: weights
(safetensors), config, generation_config (EOS and pad), the tokenizer with its chat template, a
`build.json` with every parameter and the measured time, and a README saying what the model is.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.demo_model import circuit, corpus
from studio.core.demo_model.lexicon import SYMBOLS
from studio.core.demo_model.readme import readme
from studio.core.demo_model.train import DemoParams, StepLog, fit
from studio.errors import ConfigError

DEFAULT_OUT = Path(__file__).resolve().parents[3] / "assets" / "models" / "studio-demo"
BUILD_FILE = "build.json"
ROLES = ("assistant", "user", "system")  # the chat template's role names, the assistant's first
# The RAG prompt's markers (rag.answer.build_prompt): with copy_from="context", copying is open after the first and
# closed after the second, as in the user's and system's turns.
MARKERS = ("Context", "Question")


@dataclass
class BuildResult:
    path: Path
    parameters: int
    steps_done: int
    seconds: float
    weights_mb: float
    stopped_early: bool  # --minutes ran out before the last step


# JSON's escapes of a line break and a double quote (with and without the space before it), each one token like the
# character it stands for: a quote written into a JSON string then has as many tokens as the passage it copies, and
# the copy heads, which match the last tokens against the context, keep their place after an escape.
JSON_ESCAPES = ("\\n", '\\"', ' \\"')
# Symbols of help-centre text beyond ASCII (prices, ranges, temperatures, the "·" of every RAG passage header):
# byte-level BPE keeps each as 2-3 byte tokens unless its training text holds them, and a quote that drops one byte
# is broken ("£2.40" came out as "\ufffd Drawyn2.40"). `symbol_tokens` teaches each, alone and after a space, as one token.


def role_names(params: DemoParams) -> tuple[str, ...]:
    """The words the circuit's role head keys on (each one token): none without it."""
    if not params.skip_own_reply:
        return ()
    return ROLES + MARKERS if params.copy_from == "context" else ROLES


def make_tokenizer(params: DemoParams) -> Any:
    from studio.core.rag.answer import INSTRUCTION, NO_CONTEXT_INSTRUCTION
    from studio.core.tiny_model import train_tokenizer

    texts = [*corpus.tokenizer_texts(params.seed, english=params.english_words), *[INSTRUCTION, NO_CONTEXT_INSTRUCTION] * 50]
    names = role_names(params)
    if names:  # the role head keys on each role name as one token (DemoParams: only with the circuit)
        texts += ["\n".join(names)] * 300
    if params.symbol_tokens:
        texts += [" ".join(f"2{s}3 {s}1" for s in SYMBOLS)] * 3000  # each alone (after a digit) and after a space
    tokenizer = train_tokenizer(texts, vocab_size=params.vocab_size)
    if params.mute_passage_ends:  # the RAG prompt's "Question" follows the last passage; muted, it must be one token
        if not_one_token(tokenizer, [MARKERS[1]]):  # taught only where needed
            tokenizer = train_tokenizer(texts + [MARKERS[1]] * 300, vocab_size=params.vocab_size)
        names = (*names, MARKERS[1])
    if params.escape_tokens:
        tokenizer.add_tokens(list(JSON_ESCAPES))
    if params.symbol_tokens:
        split = not_one_token(tokenizer, [*SYMBOLS, *(f" {s}" for s in SYMBOLS)])
        if split:
            raise ConfigError(f"The tokenizer split {sorted(set(split))} into pieces; symbol_tokens needs each as one token.",
                              "raise vocab_size, or build without symbol_tokens.")
    if names:
        split = not_one_token(tokenizer, names)
        if split:
            raise ConfigError(f"The tokenizer split {split} into pieces; the circuit (its role head, or muting) needs each "
                              "as one token.", "raise vocab_size, or build without skip_own_reply and mute_passage_ends.")
    return tokenizer


def not_one_token(tokenizer: Any, texts: Any) -> list[str]:
    """The texts that `tokenizer` splits into more than one token."""
    return [text for text in texts if len(tokenizer(text, add_special_tokens=False)["input_ids"]) != 1]


def vocab_tokens(tokenizer: Any, keep: Callable[[str], bool]) -> tuple[int, ...]:
    """The ids of every vocabulary token whose text `keep` accepts, in order."""
    return tuple(sorted(i for t, i in tokenizer.get_vocab().items() if keep(tokenizer.convert_tokens_to_string([t]))))


def bracket_tokens(tokenizer: Any) -> tuple[int, ...]:
    """Every vocabulary token with "[" in it: a passage header "[2] (" of the RAG prompt starts with one."""
    return vocab_tokens(tokenizer, lambda text: "[" in text)


def json_key_tokens(tokenizer: Any) -> tuple[int, ...]:
    """Every vocabulary token after which a JSON object's next key follows: `{"` (with or without a space before it)
    and the tokens that end in `",` or `],` (a string or a list closed, and the comma)."""
    return vocab_tokens(tokenizer, lambda text: text.lstrip() == '{"' or text.endswith(('",', '],')))


def make_model(tokenizer: Any, params: DemoParams) -> tuple[Any, circuit.Pins | None]:
    from studio.core.tiny_model import random_llama

    model = random_llama(tokenizer, hidden_size=params.hidden_size, layers=params.layers, heads=params.heads,
                         intermediate_size=params.intermediate_size, seed=params.seed, initializer_range=0.02,
                         head_dim=params.head_dim, rope_parameters={"rope_type": "default", "rope_theta": params.rope_theta})
    pins = None
    if params.copy_circuit:
        ids = {name: tokenizer.convert_tokens_to_ids(name) for name in role_names(params)}
        closed = ROLES[1:] + MARKERS[1:] if params.copy_from == "context" else ()  # all but the assistant and "Context"
        roles = {} if not ids else {"reply_token": ids[ROLES[0]], "role_tokens": tuple(ids.values()),
                                    "closed_tokens": tuple(ids[name] for name in closed)}
        if params.stop_at_brackets:
            roles["nocopy_tokens"] = bracket_tokens(tokenizer)
        if params.mute_passage_ends:
            roles["mute_tokens"] = bracket_tokens(tokenizer) + (tokenizer.convert_tokens_to_ids(MARKERS[1]),)
        if params.pause_after_json:
            roles["pause_tokens"] = json_key_tokens(tokenizer)
        pins = circuit.wire(model, sink_token=tokenizer.convert_tokens_to_ids("<|im_start|>"), seed=params.seed,
                            span=params.copy_span, copy_gain=params.copy_gain, primacy=params.primacy,
                            head_gain=params.head_gain, **roles)
    return model, pins


def build(out: str | Path = DEFAULT_OUT, params: DemoParams | None = None, log: Callable[[str], None] = print,
          cancel: threading.Event | None = None, command: str = "") -> BuildResult | None:
    """Build the demo model into `out` (replacing its weights and tokenizer) and return what was made.

    The folder is written next to `out` and swapped in only when complete. When `cancel` is set
    (Ctrl-C) nothing is written and None is returned; when `params.minutes` runs out, the model trained
    so far is saved and its README says how many steps it had.
    """
    import torch

    params = params or DemoParams()
    torch.set_num_threads(params.threads)
    random.seed(params.seed)
    started = time.perf_counter()
    tokenizer = make_tokenizer(params)
    model, pins = make_model(tokenizer, params)
    count = sum(p.numel() for p in model.parameters())
    log(f"tokenizer: {len(tokenizer)} tokens; model: {count / 1e6:.2f}M parameters; {params.steps} steps of "
        f"{params.chats_per_step} chats")
    chats = corpus.chats(params.seed + 1, tokenizer, params.steps * params.chats_per_step, params.mix())
    every = max(1, params.steps // 50)

    def on_step(entry: StepLog) -> None:
        if entry.step % every == 0 or entry.step == entry.steps:
            log(entry.line())

    done = fit(model, tokenizer, chats, params, on_step, cancel, pins)
    if params.copy_steps and done == params.steps:
        left = None if params.minutes is None else max(0.0, params.minutes - (time.perf_counter() - started) / 60)
        done += copy_phase(model, tokenizer, params, log, cancel, left)
    if cancel is not None and cancel.is_set():
        return None
    circuit.untie_head(model)
    if params.copy_circuit:
        circuit.boost(model, params.copy_boost)
    scale_stream(model, params.stream_scale)
    seconds = time.perf_counter() - started
    staging = Path(out).with_name(f".{Path(out).name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    save(model, tokenizer, staging)
    weights = sum(f.stat().st_size for f in staging.glob("*.safetensors")) / 1e6
    record = {"params": params.to_dict(), "parameters": count, "steps_done": done, "seconds": round(seconds, 1),
              "weights_mb": round(weights, 2), "machine": f"{platform.machine()}, torch threads {params.threads}",
              "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": command or f"studio demo-model build --seed {params.seed} --steps {params.steps}"}
    (staging / BUILD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    write_readme(staging)
    path = _replace(staging, Path(out))
    log(f"saved to {path} ({weights:.1f} MB of weights, {seconds / 60:.1f} min)")
    return BuildResult(path, count, done, seconds, weights, stopped_early=done < params.steps + params.copy_steps)


def scale_stream(model: Any, c: float) -> None:
    """Scale the residual stream by `c` without changing the model's function (up to float rounding).

    Every block reads the stream through an RMSNorm, which ignores scale once its epsilon is scaled by c², so
    multiplying the embeddings and the value and up projections by `c` (their outputs are what the blocks add to
    the stream) multiplies the whole stream by `c` and leaves every logit as it was. What changes is the LoRA on
    those projections: its update is not scaled, so against a `c` times smaller stream it is 1/c times larger.
    A model trained from scratch at a high learning rate has a stream far larger than its LoRA updates; with
    the Training tab's defaults (52 steps at 2e-4) an unscaled studio-demo learned no house JSON at all, and at
    c = 0.01 it learns it for most questions (measured: see the model's README)."""
    import torch

    if c == 1.0:
        return
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(c)
        for layer in model.model.layers:
            layer.self_attn.v_proj.weight.mul_(c)
            layer.mlp.up_proj.weight.mul_(c)
        for module in model.modules():
            if hasattr(module, "variance_epsilon"):  # every RMSNorm
                module.variance_epsilon *= c * c
    model.config.rms_norm_eps *= c * c


def copy_phase(model: Any, tokenizer: Any, params: DemoParams, log: Callable[[str], None],
               cancel: threading.Event | None = None, minutes: float | None = None) -> int:
    """Second phase: `params.copy_steps` steps (own warm-up and decay) on chats with scrambled passages."""
    phase = dataclasses.replace(params, steps=params.copy_steps, minutes=minutes)
    log(f"copy phase: {phase.steps} steps, {params.scrambled:.0%} of passages scrambled")
    mix = corpus.Mix(scrambled=params.scrambled, rate=params.scramble_rate, english=params.english_words, quote=params.quote)
    chats = corpus.chats(params.seed + 2, tokenizer, phase.steps * phase.chats_per_step, mix)
    every = max(1, phase.steps // 25)
    return fit(model, tokenizer, chats, phase, lambda e: log(e.line()) if e.step % every == 0 or e.step == e.steps else None,
               cancel)


def _replace(staging: Path, out: Path) -> Path:
    """Swap the finished folder in for `out` (an old model and its scorecard go: they described other weights)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        shutil.rmtree(old)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)
    return out


def save(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Save weights, config, generation config and tokenizer; the weights stay float32 (the model is small)."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_readme(path: Path) -> None:
    """(Re)write README.md from build.json and, when present, scorecard.json."""
    record = json.loads((path / BUILD_FILE).read_text())
    card = path / "scorecard.json"
    scores = json.loads(card.read_text()) if card.is_file() else None
    (path / "README.md").write_text(readme(record, scores))
