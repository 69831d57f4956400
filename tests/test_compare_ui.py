"""The Compare tab through the launched app's API (gradio_client) and its handlers: every pane streams its own
answer, blind labels stay hidden until a vote reveals them, votes are saved and export as valid training data,
and each mistake a user can make says what to fix without losing the conversations shown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_studio
from studio.ui import compare_views as views
from studio.ui.widgets import text_of

pytestmark = pytest.mark.slow

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

QUESTION = "How long is the warranty?"
GREEDY = {"temperature": 0.0, "max_new_tokens": 12, "retrieval_top_k": 1}
FOUR = {"panes": 4, "pane1_kind": "base", "pane2_kind": "rag", "pane2_kb": "support", "pane3_kind": "tuned",
        "pane3_adapter": "style-a", "pane4_kind": "tuned+rag", "pane4_adapter": "style-a", "pane4_kb": "support"}
TWO = {"panes": 2, "pane1_kind": "base", "pane2_kind": "tuned", "pane2_adapter": "style-a"}
# Outputs of /compare as the client sees them (the session State is not among them).
MESSAGE, TITLES, CHATS, STATS, SOURCES, VERDICT, STATUS = 0, slice(1, 5), slice(5, 9), slice(9, 13), slice(13, 17), 17, 18


@pytest.fixture(scope="module")
def studio(tiny_model_dir: Path, adapter_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[tuple[str, Any]]:
    """(url, services): a launched studio with the tiny model, adapter "style-a" and a knowledge base "support"."""
    docs = tmp_path_factory.mktemp("docs")
    (docs / "warranty.txt").write_text("The warranty covers two years of repairs. Water damage is not covered.")
    (docs / "reset.md").write_text("# Reset\n\nHold the reset button for ten seconds to restore factory settings.")
    with running_studio(tmp_path_factory.mktemp("studio-home")) as (url, services):
        services.runtime.load(services.settings.load_params(str(tiny_model_dir)))
        services.runtime.attach_adapter(adapter_dirs[0], "style-a")
        services.rag.create("support")
        *_, report = services.rag.ingest("support", [docs])
        assert not report.failed
        yield url, services


@pytest.fixture
def client(studio: tuple[str, Any]) -> Iterator[Any]:
    """A fresh browser session (its own State) on the studio."""
    client = gradio_client.Client(studio[0], verbose=False)
    yield client
    client.close()


def compare(client: Any, message: str = QUESTION, **kwargs: Any) -> list[tuple]:
    """Every streamed output of one /compare call; raises AppError when the handler raised gr.Error."""
    job = client.submit(message=message, **{**GREEDY, **kwargs}, api_name="/compare")
    outputs = list(job)
    job.result()
    return outputs


def last_answers(frame: tuple) -> list[str]:
    answers = []
    for chat in frame[CHATS]:
        if isinstance(chat, list) and chat:  # hidden slots get no update
            assert chat[-1]["role"] == "assistant"
            answers.append(text_of(chat[-1]["content"]).strip())  # the chatbot trims what it shows
    return answers


def core_answers(services: Any, panes: list[Any], histories: list | None = None, message: str = QUESTION) -> dict[str, Any]:
    """What the Compare core answers for the same panes (greedy, so the UI must show exactly these)."""
    from studio.config import GenerationParams
    from studio.core.compare import compare_stream
    from studio.core.rag.params import RetrievalParams

    events = compare_stream(services.models, services.rag, panes, histories, message,
                            GenerationParams(temperature=0.0, max_new_tokens=12), retrieval=RetrievalParams(top_k=1))
    done = {panes[e.pane].name: e.payload for e in events if e.kind == "done"}
    for answer in done.values():
        answer.text = answer.text.strip()
    return done


def variants(*specs: tuple[str, str | None, str | None]) -> list[Any]:
    from studio.core.evaluation.runner import Variant

    return [Variant(name, adapter, None, kb) for name, adapter, kb in specs]


FOUR_VARIANTS = [("Base", None, None), ("Base + RAG (support)", None, "support"), ("Tuned (style-a)", "style-a", None),
                 ("Tuned (style-a) + RAG (support)", "style-a", "support")]


def test_four_panes_stream_their_own_answers_stats_and_sources(studio: tuple[str, Any], client: Any) -> None:
    _, services = studio
    outputs = compare(client, **FOUR)
    final = outputs[-1]
    expected = core_answers(services, variants(*FOUR_VARIANTS))
    names = [name for name, *_ in FOUR_VARIANTS]
    assert last_answers(final) == [expected[n].text for n in names]  # slot k shows pane k, as the core answers it
    assert len(set(last_answers(final))) > 1 and all(last_answers(final))
    # Streamed: an earlier frame shows some pane part-way through its answer.
    partial = [answer for frame in outputs[:-1] for answer in last_answers(frame)]
    assert any(a and a != expected[n].text for a, n in zip(partial, names * len(outputs)))
    for k, name in enumerate(names):
        assert final[TITLES][k] == views.pane_title("ABCD"[k], name, hidden=False)
        stats = final[STATS][k]
        assert "tok/s" in stats and "first token" in stats and "finished:" in stats and "prompt" in stats
        assert f"{expected[name].stats.completion_tokens} tokens" in stats
    assert "warranty.txt" in final[SOURCES][1] and "warranty.txt" in final[SOURCES][3]
    assert final[SOURCES][0] == final[SOURCES][2] == ""
    assert final[MESSAGE] == "" and "Vote" in final[STATUS]

    # Multi-turn: each pane continues its own conversation.
    histories = {f"slot{k + 1}_history": chat for k, chat in enumerate(final[CHATS])}
    second = compare(client, "And water damage?", **FOUR, **histories)[-1]
    given = [[{"role": m["role"], "content": text_of(m["content"])} for m in chat] for chat in final[CHATS]]
    again = core_answers(services, variants(*FOUR_VARIANTS), given, "And water damage?")
    assert last_answers(second) == [again[n].text for n in names]
    assert [len(chat) for chat in second[CHATS]] == [4] * 4


def reversed_seed() -> int:
    """A seed for which `shuffle_panes` shows two panes in reverse order."""
    from studio.core.compare import shuffle_panes

    return next(s for s in range(100) if shuffle_panes([0, 1], s) == [1, 0])


def test_blind_mode_hides_the_names_until_the_vote_reveals_them(studio: tuple[str, Any], client: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.storage.votes import read_votes

    _, services = studio
    monkeypatch.setattr("studio.ui.compare_tab.secrets.randbelow", lambda n: reversed_seed())
    final = compare(client, blind=True, **TWO)[-1]
    expected = core_answers(services, variants(("Base", None, None), ("Tuned (style-a)", "style-a", None)))
    # Shuffled: A shows the tuned pane, B the base; the page names neither.
    assert last_answers(final) == [expected["Tuned (style-a)"].text, expected["Base"].text]
    for k, letter in enumerate("AB"):
        title = final[TITLES][k]
        assert title.startswith(f"### {letter}\n") and "hidden until you vote" in title
        assert "Base" not in title and "Tuned" not in title
        assert "tok/s" in final[STATS][k] and "prompt" not in final[STATS][k]  # a prompt's size would give RAG away
    assert "Vote to reveal" in final[STATUS]

    before = len(read_votes(services.workspace))
    shown = client.predict(verdict="B", note="shorter", api_name="/compare_vote")
    titles, stats, status = shown[0:2], shown[4:6], shown[12]  # titles, stats, sources (4 each), status, verdict, note
    assert titles[0].startswith("### A · Tuned") and "adapter style-a" in titles[0] and titles[1].startswith("### B · Base")
    assert "revealed" in titles[0] and all("prompt" in line for line in stats)  # full stats once revealed
    assert "B (Base) was best" in status and "**A** = Tuned (style-a)" in status
    votes = read_votes(services.workspace)
    assert len(votes) == before + 1
    vote = votes[-1]
    assert vote.verdict == "B" and vote.note == "shorter" and vote.labels == ["Tuned (style-a)", "Base"]
    assert [a.strip() for a in vote.answers] == last_answers(final) and vote.prompt == [{"role": "user", "content": QUESTION}]
    with pytest.raises(AppError, match="already has your vote"):
        client.predict(verdict="A", note="", api_name="/compare_vote")

    # The next message in the same conversation keeps the order, and the names stay revealed.
    histories = {f"slot{k + 1}_history": chat for k, chat in enumerate(final[CHATS][:2])}
    monkeypatch.setattr("studio.ui.compare_tab.secrets.randbelow", lambda n: 0)
    nxt = compare(client, "And then?", blind=True, **TWO, **histories)[-1]
    assert nxt[TITLES][0].startswith("### A · Tuned") and "adapter style-a" in nxt[TITLES][0]
    assert [len(chat) for chat in nxt[CHATS][:2]] == [4, 4]
    shown_a, shown_b = ([{"role": m["role"], "content": text_of(m["content"])} for m in chat] for chat in final[CHATS][:2])
    again = core_answers(services, variants(("Base", None, None), ("Tuned (style-a)", "style-a", None)),
                         [shown_b, shown_a], "And then?")  # each pane continues the conversation it showed
    assert last_answers(nxt) == [again["Tuned (style-a)"].text, again["Base"].text]


def test_votes_export_as_preference_pairs_and_a_dataset_training_accepts(studio: tuple[str, Any], client: Any) -> None:
    from studio.core.datasets import check_dataset
    from studio.storage.votes import read_votes

    _, services = studio
    three = {**FOUR, "panes": 3}
    final = compare(client, "Reset?", **three)[-1]
    client.predict(verdict="C", note="", api_name="/compare_vote")
    votes = [v for v in read_votes(services.workspace) if v.winner is not None]
    assert votes and [a.strip() for a in votes[-1].answers] == last_answers(final)[:3] and votes[-1].verdict == "C"

    file, status = client.predict(api_name="/compare_export_preferences")
    assert file["visible"] is True
    written = services.workspace.exports_dir / "votes-preferences.jsonl"
    assert Path(file["value"]).name == written.name  # downloaded by the client from the workspace's exports/
    rows = [json.loads(line) for line in written.read_text().splitlines()]
    assert f"{len(rows)} preference pair{'s' if len(rows) > 1 else ''}**" in status
    pair = rows[-1]  # the last vote's pairs come last: chosen = C's answer against each different other answer
    assert pair["chosen"] == [{"role": "assistant", "content": votes[-1].answers[2]}]
    assert pair["chosen"][0]["content"].strip() == last_answers(final)[2]
    assert pair["prompt"] == [{"role": "user", "content": "Reset?"}]
    assert pair["rejected"][0]["content"] in votes[-1].answers[:2]

    file, status = client.predict(api_name="/compare_export_sft")
    written = services.workspace.exports_dir / "votes-sft.jsonl"
    assert Path(file["value"]).name == written.name and "Training tab accepts" in status
    report = check_dataset(written)
    assert not report.has_errors and report.format == "messages" and len(report.examples) == len(votes)


def test_stopping_frees_the_model_for_the_next_message(client: Any) -> None:
    job = client.submit(message="Tell me everything.", **{**GREEDY, **TWO, "max_new_tokens": 2000}, api_name="/compare")
    deadline = time.monotonic() + 60
    while len(job.outputs()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.cancel()
    started = time.monotonic()
    assert all(last_answers(compare(client, **TWO)[-1]))
    assert time.monotonic() - started < 8, "the stopped compare kept the model busy"


def test_mistakes_say_what_to_fix(studio: tuple[str, Any], client: Any) -> None:
    cases = [
        ({"message": "   ", **TWO}, "There is nothing to send"),
        ({**TWO, "pane2_adapter": ""}, r"Pane 2 \(Tuned \(adapter\)\) needs an adapter"),
        ({**TWO, "pane2_adapter": "style-z"}, "'style-z', which is not attached"),
        ({**TWO, "pane2_kind": "rag", "pane2_kb": ""}, r"Pane 2 \(Base \+ RAG\) needs a knowledge base, and none is picked"),
        ({**TWO, "pane2_kind": "rag", "pane2_kb": "nope"}, "there is none named 'nope'.*pick one of: support"),
        ({**TWO, "pane2_kind": "base"}, r"Panes 1 and 2 are the same variant \(Base\)"),
        ({**TWO, "pane2_kind": "prompt", "pane2_preset": "missing"}, "No preset named 'missing'"),
        ({**TWO, "seed": None}, "The seed is empty"),
    ]
    for kwargs, error in cases:
        job = client.submit(**{"message": QUESTION, **GREEDY, **kwargs}, api_name="/compare")
        with pytest.raises(AppError, match=error):
            job.result()
        assert job.outputs() == []  # nothing on the page changed
    with pytest.raises(AppError, match="no finished answers to vote on"):
        client.predict(verdict="A", note="", api_name="/compare_vote")


def test_no_model_and_nothing_to_export_are_explained(tmp_path: Path) -> None:
    import gradio as gr

    from studio.config import Settings
    from studio.services import Services
    from studio.ui.compare_tab import CompareHandlers, new_session

    on = CompareHandlers(Services.build(Settings(workspace=tmp_path / "home")))
    values = {**handler_values(TWO), "pane2_kind": "prompt"}
    with pytest.raises(gr.Error, match="No model is loaded.*load one in the Models tab"):
        next(on.send(QUESTION, 2, False, new_session(), **values))
    with pytest.raises(gr.Error, match="nothing to export"):
        on.export("sft")


def handler_values(panes: dict[str, Any], histories: list[list[dict[str, str]]] | None = None) -> dict[str, Any]:
    """The keyword arguments the page sends the send handler: every picker, history and setting."""
    from studio.config import GenerationParams

    values: dict[str, Any] = {f"pane{k}_{f}": "" for k in range(1, 5) for f in ("kind", "adapter", "kb", "preset")}
    values.update({k: v for k, v in panes.items() if k != "panes"})
    values.update({f"slot{k + 1}_history": (histories or [])[k] if k < len(histories or []) else [] for k in range(4)})
    gen = GenerationParams(temperature=0.0, max_new_tokens=12)
    values.update({f: getattr(gen, f) for f in ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty",
                                                 "seed")})
    values.update(stop="", retrieval_mode="hybrid", retrieval_top_k=1, retrieval_min_similarity=0.0,
                  answer_without_context=False)
    return values


def test_a_failure_midway_puts_the_conversations_back(studio: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    import studio.core.compare as core
    from studio.core.compare import PaneEvent
    from studio.errors import GenerationError
    from studio.ui.compare_tab import CompareHandlers, new_session

    def failing(*args: Any, **kwargs: Any) -> Iterator[PaneEvent]:
        yield PaneEvent(0, "text", "Half an ans")
        raise GenerationError("Out of memory while answering 2 panes at once.", "lower max new tokens.")

    _, services = studio
    on = CompareHandlers(services)
    before = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": f"Hello from {k}."}] for k in range(2)]
    session = {**new_session(), "names": ["Base", "Tuned (style-a)"], "order": [0, 1], "blind": False}
    monkeypatch.setattr(core, "compare_stream", failing)
    frames = []
    with pytest.raises(gr.Error, match="Out of memory while answering 2 panes"):
        for frame in on.send(QUESTION, 2, False, session, **handler_values(TWO, before)):
            frames.append(frame)
    assert any("Half an ans" in str(frame[6]) for frame in frames)  # it had started streaming
    restored = frames[-1]
    assert restored[1] == QUESTION  # the message is back in the box
    assert restored[6:8] == tuple(before)  # both panes show their conversations as before the message


def test_default_setup_and_vote_options() -> None:
    assert views.default_setup(["style-a"], ["support"]) == (4, ["base", "rag", "tuned", "tuned+rag"])
    assert views.default_setup([], ["support"]) == (2, ["base", "rag", "prompt", "tuned"])
    assert views.default_setup([], []) == (2, ["base", "prompt", "rag", "tuned"])
    assert [v for _, v in views.verdict_choices(2)] == ["A", "B", "tie", "both_bad"]
    assert [v for _, v in views.verdict_choices(4)] == ["A", "B", "C", "D"]
    assert views.pane_name("tuned+rag", "style-a", "support") == "Tuned (style-a) + RAG (support)"
    assert views.pane_name("prompt", preset="terse") == "Base + preset (terse)"
    title = views.pane_title("D", "Tuned (style-a) + RAG (support)", hidden=False)
    assert title == "### D · Tuned + RAG\n<span class='cmp-muted'>adapter style-a · knowledge base support</span>"
    assert views.pane_title("B", "Tuned (style-a)", hidden=True) == "### B\n<span class='cmp-muted'>hidden until you vote</span>"
    same = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert views.shared_context([same, same]) == same
    assert views.shared_context([same, [same[0], {"role": "assistant", "content": "Hey."}]]) == []


def test_opening_the_tab_offers_what_exists_and_keeps_the_users_setup(studio: tuple[str, Any]) -> None:
    from studio.ui.compare_tab import CompareHandlers, new_session

    _, services = studio
    on = CompareHandlers(services)
    blank = {f"pane{k}_{f}": "" for k in range(1, 5) for f in ("kind", "adapter", "kb", "preset")}
    out = on.show(2, False, new_session(), **{**blank, "pane1_kind": "base", "pane2_kind": "prompt"})
    count, pickers, titles = out[0], out[1:17], out[17:]
    assert count["value"] == 4  # an adapter and a knowledge base exist: Base / Base+RAG / Tuned / Tuned+RAG
    assert "value" not in pickers[0]  # pane 1 is Base already: left alone
    assert [pickers[4 * k]["value"] for k in (1, 2, 3)] == ["rag", "tuned", "tuned+rag"]
    assert pickers[9]["value"] == "style-a" and pickers[9]["choices"] == ["style-a"]
    assert pickers[14]["value"] == "support" and pickers[14]["choices"] == ["support"]
    assert "adapter style-a · knowledge base support" in titles[3]

    # Once the user has changed the setup, opening the tab refreshes the choices but leaves the values alone.
    mine = {**blank, "pane1_kind": "base", "pane2_kind": "tuned", "pane2_adapter": "style-a", "pane3_kind": "prompt",
            "pane4_kind": "base"}
    out = on.show(2, False, new_session(touched=True), **mine)
    assert "value" not in out[0] and all("value" not in out[1 + i] for i in (0, 4, 5, 8))
    assert out[7]["choices"] == ["support"] and out[7]["value"] == "support"  # an empty pick gets the first choice
    assert out[17].startswith("### A · Base") and out[18].startswith("### B · Tuned")
