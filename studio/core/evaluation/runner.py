"""Run held-out examples through several variants (adapter × prompt preset × knowledge base) and score them.

Generation is batched: prompts are rendered with the tokenizer's chat template, left-padded to the
longest in the batch and sent through one `model.generate`. When every attached adapter is LoRA,
a batch mixes variants with different adapters through peft's per-request `adapter_names`
("__base__" = no adapter); otherwise each batch holds one adapter, set under the manager's lock.
The lock is held per batch, not per run, so a chat in another tab waits for one batch at most.
Every variant gets the same generation params and seed (greedy by default). With sampling, the seed
is set per batch, so a sampled answer also depends on which prompts shared its batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch

from studio.config import GenerationParams
from studio.core.evaluation.data import EvalExample, Message
from studio.core.evaluation.metrics import ExampleScores, aggregate, score_example
from studio.core.generation import CancelCriteria, eos_ids, generation_kwargs, render_prompt, seed_everything
from studio.core.prompting import PromptSpec, build_messages
from studio.errors import GenerationError, StudioError

if TYPE_CHECKING:
    from studio.core.models import ModelManager
    from studio.core.rag.params import AnswerParams, RetrievalParams
    from studio.core.rag.service import RagService

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
GREEDY = GenerationParams(temperature=0.0)
Progress = Callable[[int, int], None]


@dataclass
class Variant:
    """One column of the comparison: which adapter (None = base), prompt preset (None = the example's
    own messages) and knowledge base (None = no retrieval) answer the examples."""

    name: str
    adapter: str | None = None
    prompt: PromptSpec | None = None
    knowledge_base: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "adapter": self.adapter, "knowledge_base": self.knowledge_base,
                "prompt": self.prompt.to_dict() if self.prompt else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        prompt = data.get("prompt")
        return cls(str(data["name"]), data.get("adapter"), PromptSpec.from_dict(prompt) if prompt else None,
                   data.get("knowledge_base"))


@dataclass
class VariantAnswer:
    answer: str
    scores: ExampleScores
    prompt_tokens: int
    sources: list[str] = field(default_factory=list)  # RAG: the documents the retrieved context came from


@dataclass
class ExampleResult:
    example: EvalExample
    answers: dict[str, VariantAnswer]  # variant name -> its answer and scores


@dataclass
class EvaluationRun:
    """Everything one evaluation produced. `results` hold only examples every variant finished."""

    name: str
    model: str
    variants: list[Variant]
    params: GenerationParams
    batch_size: int
    results: list[ExampleResult]
    aggregates: dict[str, dict[str, Any]]  # variant name -> metric -> value (see metrics.aggregate)
    created: str = ""
    dataset: str = ""
    cancelled: bool = False
    elapsed_s: float = 0.0


@dataclass
class _Job:
    variant: int
    example: int
    token_ids: list[int]
    adapter: str | None
    sources: list[str]


def generate_batch(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], params: GenerationParams,
                   adapter_names: list[str] | None = None, cancel: threading.Event | None = None,
                   **extra: Any) -> list[tuple[str, int]]:
    """Generate for several tokenized prompts at once; returns (text, generated token count) per prompt.

    Prompts are left-padded (the attention mask hides the padding, and generate derives positions
    from it), so each answer equals the one the prompt gets alone under greedy decoding. The text is
    cut at EOS and at the first of `params.stop`, like `generation.stream`'s. `extra` goes to `model.generate` (min_new_tokens...).
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = left_padded(prompts, pad)
    width, device = ids.shape[1], next(model.parameters()).device
    kwargs = {**generation_kwargs(params, tokenizer), **extra}
    if adapter_names is not None:
        kwargs["adapter_names"] = adapter_names
    if cancel is not None:
        from transformers import StoppingCriteriaList

        kwargs["stopping_criteria"] = StoppingCriteriaList([CancelCriteria(cancel)])
    try:
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
    except torch.OutOfMemoryError:
        raise GenerationError(f"Out of memory while generating a batch of {len(prompts)} prompts of up to {width} tokens.",
                              "lower the batch size or max new tokens, or load the model in 4bit.") from None
    eos = eos_ids(model, tokenizer) | {pad}
    answers = []
    for row in out[:, width:].tolist():
        end = next((i for i, t in enumerate(row) if t in eos), len(row))
        # A character cut in half by max_new_tokens is dropped, as the chat's streaming decoder does.
        text = tokenizer.decode(row[:end], skip_special_tokens=True).rstrip("\ufffd")
        cuts = [at for s in params.stop if (at := text.find(s)) != -1]
        answers.append((text[:min(cuts)] if cuts else text, end))
    return answers


def left_padded(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, attention mask) of `prompts` left-padded with `pad` to the longest: new tokens line up at the right."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def variant_messages(variant: Variant, example: EvalExample, tokenizer: Any, rag: RagService | None = None,
                     retrieval: RetrievalParams | None = None, answer_params: AnswerParams | None = None,
                     ) -> tuple[list[Message], list[str]]:
    """The messages `variant` sends for `example`, and the sources of any retrieved context.

    RAG variants search the knowledge base for the example's question and wrap it in the RAG core's
    grounded prompt; a prompt preset then dresses that text (system prompt, few-shot turns, CoT trigger).
    Without a preset the example's own system prompt and earlier turns are kept.
    """
    question, sources = example.question, []
    if variant.knowledge_base:
        if rag is None:
            raise StudioError(f"Variant {variant.name!r} uses knowledge base {variant.knowledge_base!r} but no RAG service was given.",
                              "pass the studio's RAG service, or remove the knowledge base from the variant.")
        from studio.core.rag.answer import build_prompt
        from studio.core.rag.params import AnswerParams

        result = rag.search(variant.knowledge_base, question, retrieval)
        prompt = build_prompt(question, result.chunks, tokenizer, answer_params or AnswerParams())
        question = prompt.messages[-1]["content"]
        sources = [b.item.chunk.source for b in prompt.blocks]
    if variant.prompt is not None:
        return build_messages(variant.prompt, example.history, question), sources
    system = [{"role": "system", "content": example.system}] if example.system else []
    return system + example.history + [{"role": "user", "content": question}], sources


def evaluate(manager: ModelManager, examples: Sequence[EvalExample], variants: Sequence[Variant],
             gen_params: GenerationParams | None = None, rag: RagService | None = None, batch_size: int = 8,
             progress: Progress | None = None, cancel: threading.Event | None = None, *, name: str = "",
             dataset: str = "", retrieval: RetrievalParams | None = None, answer_params: AnswerParams | None = None,
             ) -> EvaluationRun:
    """Answer every example with every variant, score the answers and aggregate them per variant.

    `progress(done, total)` is called after each batch (total = examples × variants). Setting
    `cancel` stops at the next token; the run then holds only the examples every variant finished,
    with `cancelled=True`. Raises StudioError (GenerationError) when no model is loaded, a variant's
    adapter is not attached, variant names repeat or a preset is invalid, before anything is generated.
    """
    params = gen_params or GREEDY
    check_variants(manager, variants, batch_size)
    if not examples:
        raise StudioError("There are no examples to evaluate.", "load a held-out set with at least one example.")
    started = time.perf_counter()
    tokenizer = manager.tokenizer
    jobs = _jobs(examples, variants, tokenizer, rag, retrieval, answer_params)
    done: dict[tuple[int, int], VariantAnswer] = {}
    mixed = mixed_batches_supported(manager)
    for batch in _batches(jobs, batch_size, mixed):
        if cancel is not None and cancel.is_set():
            break
        adapter_names = [j.adapter or BASE for j in batch] if mixed else None
        tick = time.perf_counter()
        with manager.use(batch[0].adapter if not mixed else _any_adapter(manager)) as (model, tok):
            seed_everything(params.seed)
            outputs = generate_batch(model, tok, [j.token_ids for j in batch], params, adapter_names, cancel)
        if cancel is not None and cancel.is_set():
            break  # answers cut short by the cancel would be scored as if complete
        share = (time.perf_counter() - tick) / len(batch)
        for job, (text, count) in zip(batch, outputs):
            ex = examples[job.example]
            scores = score_example(text, ex.reference, ex.facts, ex.schema, latency_s=share, tokens=count)
            done[(job.variant, job.example)] = VariantAnswer(text, scores, len(job.token_ids), job.sources)
        if progress is not None:
            progress(len(done), len(jobs))
    return _assemble(manager, examples, variants, params, batch_size, done, name, dataset,
                     cancelled=cancel is not None and cancel.is_set(), elapsed=time.perf_counter() - started)


def check_variants(manager: ModelManager, variants: Sequence[Variant], batch_size: int) -> None:
    if not variants:
        raise StudioError("No variants to compare.", "add at least one variant (e.g. the base model).")
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated or not all(n.strip() for n in names):
        raise StudioError(f"Variant names must be unique and non-empty, got {names}.", "give every variant its own name.")
    if batch_size < 1:
        raise StudioError(f"`batch_size` should be at least 1, got {batch_size}.", "use a batch size of 1 or more.")
    if not manager.is_loaded:
        raise GenerationError("No model is loaded.", "load one in the Models tab (or pass --model).")
    attached = manager.adapters()
    for v in variants:
        if v.adapter and v.adapter not in attached:
            raise StudioError(f"Variant {v.name!r} uses adapter {v.adapter!r}, which is not attached.",
                              "attach it in the Models tab, or pick one of: " + (", ".join(attached) or "none attached"))
        if v.prompt is not None:
            v.prompt.validate()


def _jobs(examples: Sequence[EvalExample], variants: Sequence[Variant], tokenizer: Any, rag: RagService | None,
          retrieval: RetrievalParams | None, answer_params: AnswerParams | None) -> list[_Job]:
    jobs = []
    for e, example in enumerate(examples):
        for v, variant in enumerate(variants):
            messages, sources = variant_messages(variant, example, tokenizer, rag, retrieval, answer_params)
            jobs.append(_Job(v, e, render_prompt(tokenizer, messages).token_ids, variant.adapter, sources))
    return jobs


def _batches(jobs: list[_Job], size: int, mixed: bool) -> list[list[_Job]]:
    """Batches in example order (so a cancelled run keeps whole examples); prompts of similar length
    share a batch within each window of examples, which keeps padding small."""
    groups: dict[str | None, list[_Job]] = {None: jobs} if mixed else {}
    if not mixed:
        for job in jobs:
            groups.setdefault(job.adapter, []).append(job)
    batches = []
    for group in groups.values():
        window = size * 4
        for start in range(0, len(group), window):
            chunk = sorted(group[start:start + window], key=lambda j: len(j.token_ids))
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    return batches


def mixed_batches_supported(manager: ModelManager) -> bool:
    """True when adapters are attached and all are (unmerged) LoRA: peft can then pick one per row."""
    with manager.use(None) as (model, _tok):
        configs = getattr(model, "peft_config", None)
        if not configs:
            return False
        return all(getattr(c.peft_type, "value", c.peft_type) == "LORA" for c in configs.values())


def _any_adapter(manager: ModelManager) -> str | None:
    attached = manager.adapters()
    return attached[0] if attached else None


def _assemble(manager: ModelManager, examples: Sequence[EvalExample], variants: Sequence[Variant],
              params: GenerationParams, batch_size: int, done: dict[tuple[int, int], VariantAnswer], name: str,
              dataset: str, cancelled: bool, elapsed: float) -> EvaluationRun:
    results = []
    for e, example in enumerate(examples):
        if all((v, e) in done for v in range(len(variants))):
            results.append(ExampleResult(example, {variant.name: done[(v, e)] for v, variant in enumerate(variants)}))
    aggregates = {}
    for variant in variants:
        answers = [r.answers[variant.name] for r in results]
        aggregates[variant.name] = aggregate([a.scores for a in answers], [a.answer for a in answers],
                                             [r.example.reference for r in results])
    info = manager.info()
    now = datetime.now(timezone.utc)
    return EvaluationRun(name=name or now.strftime("eval-%Y%m%d-%H%M%S"), model=info.name if info else "",
                         variants=list(variants), params=params, batch_size=batch_size, results=results,
                         aggregates=aggregates, created=now.isoformat(timespec="seconds"), dataset=dataset,
                         cancelled=cancelled, elapsed_s=elapsed)
