"""Answer a question from a knowledge base: retrieve, fit the context budget, stream, parse citations.

`answer()` yields the `SearchResult` first (so sources can be shown at once), then the `Chunk`s of
the answer as they stream from `studio.core.generation.stream`, and finally one `RagAnswer` with the
sources the answer cited. When no chunk passes the relevance threshold it yields a RagAnswer that
says so without generating, unless `AnswerParams.answer_without_context` is on.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from studio.config import GenerationParams
from studio.core.generation import Chunk as TextChunk
from studio.core.generation import Completion, Message, stream
from studio.core.models import ModelManager
from studio.core.rag.index import KnowledgeBases
from studio.core.rag.params import AnswerParams, RetrievalParams
from studio.core.rag.retrieval import CrossEncoderLike, RetrievedChunk, SearchResult, search
from studio.errors import GenerationError, StudioError

NO_CONTEXT = "No relevant context found in the knowledge base for this question, so no answer was generated."
INSTRUCTION = ("Answer the question using only the numbered context passages above. Cite every passage you use "
               "by its number in square brackets, like [1] or [2][3]. If the context does not contain the answer, "
               "reply exactly: I don't know.")
NO_CONTEXT_INSTRUCTION = ("No relevant passage was found in the knowledge base. Answer from general knowledge "
                          "and say clearly that the answer is not backed by the documents.")
_CITATION = re.compile(r"\[(\s*\d+(?:\s*[-–,]\s*\d+)*\s*)\]")


@dataclass
class ContextBlock:
    number: int  # the [n] the model cites
    item: RetrievedChunk
    text: str  # the block as the model sees it, header included
    tokens: int


@dataclass
class RagPrompt:
    messages: list[Message]
    blocks: list[ContextBlock]
    dropped: list[RetrievedChunk]  # lowest-ranked chunks that did not fit the context budget
    context_tokens: int


@dataclass
class Citation:
    number: int
    block: ContextBlock

    @property
    def label(self) -> str:
        chunk = self.block.item.chunk
        where = [chunk.source] + ([f"page {chunk.page}"] if chunk.page else []) + ([chunk.heading] if chunk.heading else [])
        return f"[{self.number}] " + " · ".join(where)


@dataclass
class RagAnswer:
    text: str
    search: SearchResult
    prompt: RagPrompt | None = None
    completion: Completion | None = None
    citations: list[Citation] = field(default_factory=list)
    unknown_citations: list[int] = field(default_factory=list)  # [n] with no such passage
    no_context: bool = False


def block_text(number: int, item: RetrievedChunk) -> str:
    chunk = item.chunk
    header = [chunk.source] + ([f"page {chunk.page}"] if chunk.page else []) + ([chunk.heading] if chunk.heading else [])
    return f"[{number}] ({' · '.join(header)})\n{chunk.text.strip()}"


def fit_context(items: list[RetrievedChunk], tokenizer: Any, budget: int) -> tuple[list[ContextBlock], list[RetrievedChunk]]:
    """Number chunks in rank order while they fit `budget` tokens; the rest (the lowest-ranked) are dropped whole."""
    blocks: list[ContextBlock] = []
    used = 0
    for i, item in enumerate(items):
        text = block_text(len(blocks) + 1, item)
        tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if used + tokens > budget:
            return blocks, items[i:]
        blocks.append(ContextBlock(len(blocks) + 1, item, text, tokens))
        used += tokens
    return blocks, []


def build_prompt(question: str, items: list[RetrievedChunk], tokenizer: Any, params: AnswerParams) -> RagPrompt:
    """The chat messages for `question` with as many top chunks as the context budget holds.

    Raises StudioError when even the best chunk does not fit the budget.
    """
    blocks, dropped = fit_context(items, tokenizer, params.context_tokens)
    if items and not blocks:
        need = len(tokenizer(block_text(1, items[0]), add_special_tokens=False)["input_ids"])
        raise StudioError(f"The best chunk needs {need} tokens but the context budget is {params.context_tokens}.",
                          f"raise the context budget to at least {need} tokens, or use smaller chunks.")
    if blocks:
        context = "\n\n".join(b.text for b in blocks)
        content = f"Context:\n{context}\n\nQuestion: {question.strip()}\n\n{INSTRUCTION}"
    else:
        content = f"Question: {question.strip()}\n\n{NO_CONTEXT_INSTRUCTION}"
    return RagPrompt([{"role": "user", "content": content}], blocks, dropped, sum(b.tokens for b in blocks))


def parse_citations(text: str) -> list[int]:
    """Passage numbers cited as [n], [n, m] or [n-m], in order of first appearance, without repeats."""
    numbers: list[int] = []
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            bounds = [int(x) for x in re.split(r"[-–]", part.strip()) if x.strip()]
            span = range(bounds[0], bounds[-1] + 1) if len(bounds) == 2 and 0 < bounds[1] - bounds[0] < 50 else bounds[:1]
            numbers.extend(n for n in span if n not in numbers)
    return numbers


def cite(text: str, blocks: list[ContextBlock]) -> tuple[list[Citation], list[int]]:
    by_number = {b.number: b for b in blocks}
    numbers = parse_citations(text)
    return ([Citation(n, by_number[n]) for n in numbers if n in by_number], [n for n in numbers if n not in by_number])


def answer(manager: ModelManager, kbs: KnowledgeBases, kb: str, question: str,
           retrieval: RetrievalParams | None = None, params: AnswerParams | None = None,
           generation: GenerationParams | None = None, adapter: str | None = None,
           cancel: threading.Event | None = None, reranker: CrossEncoderLike | None = None,
           ) -> Iterator[SearchResult | TextChunk | RagAnswer]:
    """Retrieve from `kb`, then stream an answer grounded in the retrieved chunks (see module doc).

    Raises StudioError (GenerationError when no model is loaded) before anything is generated.
    """
    params, generation = params or AnswerParams(), generation or GenerationParams()
    if not manager.is_loaded:
        raise GenerationError("No model is loaded.", "load one in the Models tab (or pass --model).")
    result = search(kbs, kb, question, retrieval, reranker=reranker)
    yield result
    if result.empty and not params.answer_without_context:
        yield RagAnswer(NO_CONTEXT, result, no_context=True)
        return
    prompt = build_prompt(question, result.chunks, manager.tokenizer, params)
    completion = None
    for event in stream(manager, prompt.messages, generation, adapter=adapter, cancel=cancel):
        if isinstance(event, Completion):
            completion = event
        else:
            yield event
    text = completion.text if completion else ""
    citations, unknown = cite(text, prompt.blocks)
    yield RagAnswer(text, result, prompt, completion, citations, unknown, no_context=result.empty)
