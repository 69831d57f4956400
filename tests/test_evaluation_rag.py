"""RAG variants in an evaluation: the prompt is the RAG core's grounded prompt for the retrieved chunks."""

from __future__ import annotations


import pytest

from studio.config import GenerationParams
from studio.core.evaluation.data import parse_example
from studio.core.evaluation.runner import Variant, evaluate, variant_messages
from studio.core.models import ModelManager
from studio.core.prompting import ZERO_SHOT, PromptSpec
from studio.core.rag.answer import INSTRUCTION
from studio.core.rag.params import RetrievalParams
from studio.core.rag.service import RagService

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(model_and_kb: tuple[ModelManager, RagService]) -> tuple[ModelManager, RagService]:
    return model_and_kb


def test_rag_variants_answer_from_the_retrieved_context(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    example = parse_example({"question": "How long is the warranty?", "reference": "Two years.", "facts": ["two years"],
                             "system": "Be brief."}, line=1)
    messages, sources = variant_messages(Variant("rag", knowledge_base="support"), example, manager.tokenizer, rag,
                                         RetrievalParams(top_k=1))
    assert sources == ["warranty.txt"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert "The warranty covers two years" in messages[-1]["content"] and INSTRUCTION in messages[-1]["content"]
    # A preset dresses the grounded prompt (its own system prompt replaces the example's).
    spec = PromptSpec(ZERO_SHOT, system="House style.", instruction="Answer in one line.")
    dressed, _ = variant_messages(Variant("rag+p", prompt=spec, knowledge_base="support"), example, manager.tokenizer, rag)
    assert dressed[0]["content"] == "House style." and dressed[-1]["content"].startswith("Answer in one line.")
    assert "The warranty covers two years" in dressed[-1]["content"]

    variants = [Variant("base"), Variant("rag", knowledge_base="support"), Variant("rag+tuned", "style-a", None, "support")]
    run = evaluate(manager, [example], variants, GenerationParams(temperature=0.0, max_new_tokens=4), rag=rag,
                   retrieval=RetrievalParams(top_k=1))
    answers = run.results[0].answers
    assert answers["rag"].sources == ["warranty.txt"] and answers["base"].sources == []
    assert answers["rag"].prompt_tokens > answers["base"].prompt_tokens
    assert answers["rag"].answer != answers["rag+tuned"].answer
