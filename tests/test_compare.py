"""Compare: several panes answer one message from one batched generation on the one resident base."""

from __future__ import annotations

import threading

import pytest

from studio.config import GenerationParams
from studio.core.compare import PaneEvent, PaneAnswer, compare_stream, pane_messages
from studio.core.evaluation.runner import Variant
from studio.core.generation import generate
from studio.core.models import ModelManager
from studio.core.rag.params import RetrievalParams
from studio.core.rag.service import RagService
from studio.errors import StudioError

pytestmark = pytest.mark.slow
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=12)
TOP1 = RetrievalParams(top_k=1)


@pytest.fixture(scope="module")
def setup(model_and_kb: tuple[ModelManager, RagService]) -> tuple[ModelManager, RagService]:
    return model_and_kb


PANES = [Variant("base"), Variant("base+rag", knowledge_base="support"), Variant("tuned", "style-a"),
         Variant("tuned+rag", "style-a", None, "support")]


def run(manager: ModelManager, rag: RagService, panes: list[Variant], histories: list | None, message: str,
        params: GenerationParams = GREEDY, cancel: threading.Event | None = None) -> tuple[list[PaneEvent], dict[int, PaneAnswer]]:
    events = list(compare_stream(manager, rag, panes, histories, message, params, cancel, retrieval=TOP1))
    return events, {e.pane: e.payload for e in events if e.kind == "done"}


def test_all_panes_stream_and_equal_their_single_answers(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    events, done = run(manager, rag, PANES, None, "How long is the warranty?")
    assert sorted(done) == [0, 1, 2, 3]
    assert {e.pane for e in events if e.kind == "sources"} == {1, 3}
    for i, pane in enumerate(PANES):
        answer = done[i]
        streamed = "".join(e.payload for e in events if e.pane == i and e.kind == "text")
        assert streamed == answer.text and answer.stats.completion_tokens > 0
        assert answer.stats.time_to_first_token_s > 0 and answer.stats.tokens_per_s > 0
        # The same pane alone, through the ordinary single-answer path, says the same under greedy decoding.
        prepared = pane_messages(pane, [], "How long is the warranty?", manager.tokenizer, rag, TOP1)
        assert prepared.messages == answer.messages
        assert generate(manager, prepared.messages, GREEDY, pane.adapter).text == answer.text, pane.name
    assert done[1].rag is not None and done[1].rag.search.chunks[0].chunk.source == "warranty.txt"
    assert done[0].text != done[2].text  # the adapter really was applied to its rows


def test_prompts_prefilled_in_chunks_give_the_same_answers(setup: tuple[ModelManager, RagService],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import studio.core.compare as compare

    manager, rag = setup
    _, whole = run(manager, rag, PANES, None, "How long is the warranty?")
    monkeypatch.setattr(compare, "PREFILL_CHUNK", 3)  # every prompt is longer: prefilled 3 tokens at a time
    _, chunked = run(manager, rag, PANES, None, "How long is the warranty?")
    assert [chunked[i].text for i in range(4)] == [whole[i].text for i in range(4)]
    assert all(whole[i].text for i in range(4))


def test_the_base_is_shared_not_copied(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    with manager.use(None) as (model, _tok):
        weight = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
        before, model_id = weight.data_ptr(), id(model)
    count = models_alive()
    run(manager, rag, PANES, None, "Reset?")
    with manager.use(None) as (model, _tok):
        assert id(model) == model_id
        assert model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight.data_ptr() == before
    assert models_alive() == count  # no second model object was built


def models_alive() -> int:
    import gc
    import warnings

    from transformers import PreTrainedModel

    def is_model(obj: object) -> bool:
        try:
            return isinstance(obj, PreTrainedModel)
        except ReferenceError:  # a weakref proxy whose object is gone (other tests leave some behind)
            return False

    with warnings.catch_warnings():  # isinstance on every object touches deprecated torch module attributes
        warnings.simplefilter("ignore")
        return sum(is_model(o) for o in gc.get_objects())


def test_histories_stay_per_pane(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    panes = PANES[::2]
    given = [[], [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]]
    _, first = run(manager, rag, panes, given, "First question?")
    assert given[0] == [] and len(given[1]) == 2  # inputs untouched
    histories = [first[0].history, first[1].history]
    assert histories[0][-2:] == [{"role": "user", "content": "First question?"}, {"role": "assistant", "content": first[0].text}]
    assert histories[1][:2] == given[1] and histories[1][-1]["content"] == first[1].text
    _, second = run(manager, rag, panes, histories, "And then?")
    assert second[0].messages[:-1] == histories[0] and second[1].messages[:-1] == histories[1]
    assert len(second[0].history) == 4 and len(second[1].history) == 6
    for i, pane in enumerate(panes):
        assert generate(manager, second[i].messages, GREEDY, pane.adapter).text == second[i].text


def test_cancel_stops_every_pane(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    cancel = threading.Event()
    long = GenerationParams(temperature=0.0, max_new_tokens=400)
    events, done = [], {}
    for event in compare_stream(manager, rag, PANES[::2], None, "Tell me everything.", long, cancel):
        events.append(event)
        if event.kind == "text":
            cancel.set()
        if event.kind == "done":
            done[event.pane] = event.payload
    assert sorted(done) == [0, 1]
    for answer in done.values():
        assert answer.stats.finish_reason in ("cancelled", "eos") and answer.stats.completion_tokens < 50
    assert any(a.stats.finish_reason == "cancelled" for a in done.values())


def test_sampling_uses_one_seed_for_every_pane(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    sampled = GenerationParams(temperature=0.9, max_new_tokens=8, seed=3)
    _, a = run(manager, rag, PANES[::2], None, "Hello", sampled)
    _, b = run(manager, rag, PANES[::2], None, "Hello", sampled)
    assert [a[i].text for i in a] == [b[i].text for i in b]


def test_bad_compares_say_what_to_fix(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    with pytest.raises(StudioError, match="2 to 4 panes"):
        list(compare_stream(manager, rag, PANES[:1], None, "Hi"))
    with pytest.raises(StudioError, match="not attached"):
        list(compare_stream(manager, rag, [Variant("a"), Variant("b", "missing")], None, "Hi"))
    with pytest.raises(StudioError, match="unique"):
        list(compare_stream(manager, rag, [Variant("a"), Variant("a")], None, "Hi"))
    with pytest.raises(StudioError, match="no RAG service"):
        list(compare_stream(manager, None, PANES[:2], None, "Hi"))


def test_a_stop_string_ends_only_its_own_pane(setup: tuple[ModelManager, RagService]) -> None:
    manager, rag = setup
    panes = PANES[::2]
    long = GenerationParams(temperature=0.0, max_new_tokens=24)
    _, free = run(manager, rag, panes, None, "Hello", long)
    stop = free[0].text[len(free[0].text) // 2:][:2]
    assert stop and stop not in free[1].text  # (deterministic under greedy decoding)
    with_stop = GenerationParams(temperature=0.0, max_new_tokens=24, stop=[stop])
    _, done = run(manager, rag, panes, None, "Hello", with_stop)
    assert done[0].stats.finish_reason == "stop" and free[0].text.startswith(done[0].text)
    assert stop not in done[0].text
    for i, pane in enumerate(panes):  # each pane still equals its own single answer with the same stop string
        assert generate(manager, done[i].messages, with_stop, pane.adapter).text == done[i].text
    assert done[1].text == free[1].text and done[1].stats.finish_reason != "stop"


def test_a_rag_pane_without_relevant_context_answers_so(setup: tuple[ModelManager, RagService]) -> None:
    from studio.core.rag.answer import NO_CONTEXT

    manager, rag = setup
    events = list(compare_stream(manager, rag, PANES[:2], None, "Warranty?", GREEDY,
                                 retrieval=RetrievalParams(top_k=1, min_similarity=0.99)))
    done = {e.pane: e.payload for e in events if e.kind == "done"}
    assert done[1].no_context and done[1].text == NO_CONTEXT and done[1].history[-1]["content"] == NO_CONTEXT
    assert done[0].stats.completion_tokens > 0 and not done[0].no_context
