"""Compare tab: one message answered side by side by 2-4 variants (base, prompt preset, RAG, adapters), blind votes.

Every pane answers from the one resident base in a single batched generation (`studio.core.compare`),
with the same sampling parameters and seed. Blind mode shuffles the panes and shows them as A-D
until a vote (`studio.storage.votes`) reveals who was who; votes export as DPO pairs or SFT examples.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, get_args

import gradio as gr

from studio.config import field_help
from studio.core.prompting import PromptSpec
from studio.core.rag.params import AnswerParams, RetrievalMode, RetrievalParams
from studio.errors import GenerationError, StudioError
from studio.storage.votes import export_votes, record_vote
from studio.ui import compare_views as views
from studio.ui.widgets import (
    HIDDEN, MODEL_EVENTS, generation_inputs, merge_inputs, plain_messages, read_generation, short_name, slider, user_errors)

if TYPE_CHECKING:
    from studio.core.evaluation.runner import Variant
    from studio.services import Services

INTRO = ("Send one message to **2-4 variants at once** and read the answers side by side: the base model, the base "
         "dressed by a prompt preset, the base with RAG, and your adapters with or without RAG. All panes answer in one "
         "batched generation from the one loaded model, with the same parameters and seed. **Blind mode** hides which "
         "pane is which until you vote; votes become preference pairs or training examples.")
MAX_PANES = 4
FIELDS = ("kind", "adapter", "kb", "preset")
START_KINDS = ("base", "rag", "tuned", "tuned+rag")
YIELD_EVERY_S = 0.05  # streamed frames per second are capped: four chatbots re-rendered per token is wasted work


def build_compare_tab(services: Services) -> gr.Tab:
    on = CompareHandlers(services)
    with gr.Tab("Compare") as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            count = gr.Radio([2, 3, 4], value=MAX_PANES, label="Panes", scale=1, elem_id="compare-count",
                             info="How many variants answer side by side.")
            blind = gr.Checkbox(False, label="Blind mode", scale=2, elem_id="compare-blind",
                                info="Shuffle the panes and show them as A, B, C, D until you vote.")
        with gr.Accordion("Pane setup", open=True) as setup:
            with gr.Row(equal_height=False):
                picker_cols, pickers = zip(*(_picker(k) for k in range(MAX_PANES)))
        with gr.Row(equal_height=False, elem_id="compare-panes"):
            slot_cols, titles, chats, stats, sources = zip(*(_slot(k) for k in range(MAX_PANES)))
        with gr.Row(equal_height=True):
            message = gr.Textbox(show_label=False, placeholder="One message for every pane: type it and press Enter",
                                 scale=6, elem_id="compare-message")
            send = gr.Button("Send", variant="primary", scale=1, min_width=80)
            stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
            clear = gr.Button("Clear", scale=1, min_width=80)
        with gr.Row(equal_height=False):
            vote = _vote_panel()
            export = _export_panel()
            with gr.Column(scale=3, min_width=320):
                gen = generation_inputs(open=False)
                retrieval = _retrieval_inputs()
        session = gr.State(new_session())

    pick = {f"pane{k + 1}_{f}": p[f] for k, p in enumerate(pickers) for f in FIELDS}
    frame = [*titles, *chats, *stats, *sources]
    tab.select(on.show, [count, blind, session], [count, *pick.values(), *titles], inputs_kwargs=pick,
               show_progress="hidden", **HIDDEN)
    gr.on([count.change, *(p["kind"].change for p in pickers)], on.layout, count, [*picker_cols, *slot_cols,
          *(p[f] for p in pickers for f in FIELDS[1:]), vote["verdict"]], inputs_kwargs=pick, show_progress="hidden",
          trigger_mode="always_last", **HIDDEN)
    history = {f"slot{k + 1}_history": chat for k, chat in enumerate(chats)}
    sending = gr.on([message.submit, send.click], on.send, [message, count, blind, session],
                    [session, message, *frame, vote["verdict"], vote["status"]],
                    inputs_kwargs=merge_inputs(pick, history, gen, retrieval), api_name="compare",
                    show_progress="minimal", **MODEL_EVENTS)
    stop.click(None, None, None, cancels=[sending], **HIDDEN)
    # A pane's own trash button clears the whole conversation: panes that remember different turns could not be compared.
    resets = [count.input, blind.input, clear.click, *(c.clear for c in chats), *(p[f].input for p in pickers for f in FIELDS)]
    # always_last: a second change while the first reset is pending (panes, then blind) must not be dropped.
    gr.on(resets, on.reset, [count, blind, session], [session, *frame, vote["status"]], inputs_kwargs=pick,
          cancels=[sending], show_progress="hidden", trigger_mode="always_last", **HIDDEN)
    blind.input(lambda hide: gr.update(open=not hide), blind, setup, show_progress="hidden", **HIDDEN)
    reveal = [session, *titles, *stats, *sources, vote["status"]]
    vote["vote"].click(on.vote, [vote["verdict"], vote["note"], session], [*reveal, vote["verdict"], vote["note"]],
                       api_name="compare_vote")
    vote["reveal"].click(on.reveal, session, reveal, **HIDDEN)
    for kind in ("preferences", "sft"):
        export[kind].click(partial(on.export, kind), None, [export["file"], export["status"]],
                           api_name=f"compare_export_{kind}")
    return tab


# Layout ---------------------------------------------------------------------------------------------------
def _picker(k: int) -> tuple[Any, dict[str, Any]]:
    kind = START_KINDS[k]
    with gr.Column(min_width=220, elem_id=f"compare-setup-{k + 1}") as column:
        picker = {
            "kind": gr.Dropdown([(label, key) for key, label in views.KINDS.items()], value=kind, label=f"Pane {k + 1}"),
            "adapter": gr.Dropdown([], value="", label="Adapter", allow_custom_value=True,
                                   visible=kind in views.NEEDS_ADAPTER, info="Attached in the Models tab."),
            "kb": gr.Dropdown([], value="", label="Knowledge base", allow_custom_value=True,
                              visible=kind in views.NEEDS_KB, info="Built in the RAG tab."),
            "preset": gr.Dropdown([views.DEFAULT_PRESET], value="", label="Prompt preset", allow_custom_value=True,
                                  visible=kind == "prompt", info="Saved in the Playground."),
        }
    return column, picker


def _slot(k: int) -> tuple[Any, ...]:
    letter = views.letters(MAX_PANES)[k]
    with gr.Column(min_width=260, elem_classes="cmp-slot", elem_id=f"compare-slot-{k + 1}") as column:
        title = gr.Markdown(views.pane_title(letter, views.pane_name(START_KINDS[k]), hidden=False),
                            elem_id=f"compare-title-{k + 1}", elem_classes="cmp-title")
        chat = gr.Chatbot(show_label=False, height=340, buttons=["copy"], elem_id=f"compare-chat-{k + 1}",
                          placeholder=f"Pane {letter}'s answers appear here.")
        stats = gr.Markdown(elem_classes="cmp-stats", elem_id=f"compare-stats-{k + 1}")
        sources = gr.HTML(elem_id=f"compare-sources-{k + 1}")
    return column, title, chat, stats, sources


def _vote_panel() -> dict[str, Any]:
    with gr.Column(scale=3, min_width=320, elem_id="compare-vote"):
        gr.Markdown("#### Vote")
        verdict = gr.Radio(views.verdict_choices(MAX_PANES), value=None, label="Which answer is better?",
                           info="With 3-4 panes, pick the best one; ties and both-bad are for two panes.")
        note = gr.Textbox(label="Notes (optional)", lines=2, placeholder="Why: cites the right passage, shorter…")
        with gr.Row():
            submit = gr.Button("Vote", variant="primary")
            reveal = gr.Button("Reveal without voting")
        status = gr.Markdown("Send a message, then vote for the best answer.", elem_id="compare-vote-status")
    return {"verdict": verdict, "note": note, "vote": submit, "reveal": reveal, "status": status}


def _export_panel() -> dict[str, Any]:
    with gr.Column(scale=3, min_width=320):
        gr.Markdown("#### Turn votes into training data")
        preferences = gr.Button("Export preference pairs (DPO, JSONL)", size="sm")
        sft = gr.Button("Export SFT examples (chat JSONL)", size="sm")
        file = gr.File(label="Download", interactive=False, visible=False, elem_id="compare-export-file")
        status = gr.Markdown("Votes with a winner become pairs (chosen / rejected) or chat examples (the chosen answer); "
                             "the SFT file is a dataset the **Training** tab accepts.", elem_id="compare-export-status")
    return {"preferences": preferences, "sft": sft, "file": file, "status": status}


def _retrieval_inputs() -> dict[str, Any]:
    with gr.Accordion("Retrieval settings (RAG panes)", open=False):
        return {"retrieval_mode": gr.Radio(list(get_args(RetrievalMode)), value=RetrievalParams().mode, label="Retriever",
                                           info=field_help(RetrievalParams, "mode")),
                "retrieval_top_k": slider(RetrievalParams, "top_k", "Top-k", maximum=20),
                "retrieval_min_similarity": slider(RetrievalParams, "min_similarity", "Relevance threshold (cosine)"),
                "answer_without_context": gr.Checkbox(False, label="Answer even without relevant context",
                                                      info=field_help(AnswerParams, "answer_without_context"))}


def new_session(touched: bool = False) -> dict[str, Any]:
    """The per-browser state: panes in play, display order, whether names are revealed, the last finished turn."""
    return {"touched": touched, "names": [], "order": [], "blind": False, "revealed": True, "turn": None}


# Handlers -----------------------------------------------------------------------------------------------------
class CompareHandlers:
    """The Compare tab's handlers: pane pickers → variants → `compare_stream`, and blind votes → `studio.storage.votes`."""

    def __init__(self, services: Services) -> None:
        self.models, self.runtime, self.rag, self.workspace = services.models, services.runtime, services.rag, services.workspace

    # Pickers ------------------------------------------------------------------------------------------
    def show(self, panes: int, blind: bool, session: dict[str, Any], **pick: Any) -> tuple[Any, ...]:
        """Fresh adapter / knowledge base / preset choices when the tab opens. Until the user changes the setup,
        the panes start as Base / Base+RAG / Tuned / Tuned+RAG, as far as an adapter and a knowledge base exist."""
        adapters = self.runtime.adapters()
        kbs = self._kb_names(quiet=True)
        presets = self.workspace.list_presets()
        if session.get("touched"):
            count, kinds = int(panes), [pick[f"pane{k + 1}_kind"] for k in range(MAX_PANES)]
        else:
            count, kinds = views.default_setup(adapters, kbs)
        updates, values = [], {}
        choices = {"kind": None, "adapter": adapters, "kb": kbs, "preset": [views.DEFAULT_PRESET, *presets]}
        for k in range(MAX_PANES):
            key = f"pane{k + 1}_"
            values.update({key + "kind": kinds[k], key + "adapter": _keep(pick[key + "adapter"], adapters),
                           key + "kb": _keep(pick[key + "kb"], kbs),
                           key + "preset": pick[key + "preset"] if pick[key + "preset"] in presets else ""})
            updates += [_changed(pick[key + f], values[key + f], choices[f]) for f in FIELDS]
        return (_changed(int(panes), count), *updates, *_titles(_names(count, values), blind, session))

    def layout(self, panes: int, **pick: Any) -> tuple[Any, ...]:
        """Show as many setup columns and panes as the count says, and each pane's pickers for its kind."""
        count = int(panes)
        shown = [gr.update(visible=k < count) for k in range(MAX_PANES)]
        fields = []
        for k in range(MAX_PANES):
            kind = pick[f"pane{k + 1}_kind"]
            fields += [gr.update(visible=kind in views.NEEDS_ADAPTER), gr.update(visible=kind in views.NEEDS_KB),
                       gr.update(visible=kind == "prompt")]
        return (*shown, *shown, *fields, gr.update(choices=views.verdict_choices(count), value=None))

    def reset(self, panes: int, blind: bool, session: dict[str, Any], **pick: Any) -> tuple[Any, ...]:
        """A changed setup (or Clear) starts a new conversation: a blind order must not outlive its panes."""
        fresh = new_session(touched=True)
        count = int(panes)
        names = _names(count, pick)
        status = "Send a message, then vote for the best answer." + (" Names are hidden until you vote." if blind else "")
        return (fresh, *_titles(names, blind, fresh), *([[]] * MAX_PANES), *([""] * MAX_PANES), *([""] * MAX_PANES),
                status)

    # Sending ----------------------------------------------------------------------------------------
    def send(self, message: str, panes: int, blind: bool, session: dict[str, Any], **values: Any) -> Iterator[tuple[Any, ...]]:
        """Stream every pane's answer to `message`; ends with stats, sources and a vote prompt.

        Errors before generation leave the page as it was; an error midway puts the conversations back
        as they were before this message and gives the message back.
        """
        from studio.core.compare import check_panes, compare_stream, shuffle_panes

        with user_errors():
            count = int(panes)
            variants = self._variants(count, values)
            names = [v.name for v in variants]
            slots = [plain_messages(values[f"slot{k + 1}_history"]) for k in range(count)]
            same = session.get("names") == names and session.get("blind") == bool(blind) and any(slots)
            order = list(session["order"]) if same else (shuffle_panes(variants, secrets.randbelow(2**31)) if blind
                                                         else list(range(count)))
            previous = session.get("turn") if same else None
            session = {**session, "names": names, "order": order, "blind": bool(blind), "turn": None, "touched": True,
                       "revealed": session.get("revealed", True) if same else not blind}
            histories = [slots[order.index(i)] for i in range(count)]
            gen, retrieval, answer = read_generation(values), _retrieval(values), _answer(values)
            if not (message or "").strip():
                raise GenerationError("There is nothing to send.", "type a message first.")
            self._check_loaded()
            check_panes(self.models, variants, histories)
            stream = compare_stream(self.models, self.rag, variants, histories, message, gen, retrieval=retrieval,
                                    answer_params=answer)
            turn = _Turn(session, histories, message, previous)
            yield turn.frame("")
            try:
                with contextlib.closing(stream):
                    yield from turn.follow(stream)
            except StudioError:
                yield turn.restore(message)
                raise
            yield turn.finished()

    def _variants(self, count: int, values: dict[str, Any]) -> list[Variant]:
        """The panes as evaluation variants; StudioError naming the pane whose setup is incomplete."""
        from studio.core.evaluation.runner import Variant

        variants, kbs = [], None
        for k in range(count):
            kind, adapter, kb, preset = (values.get(f"pane{k + 1}_{f}") or "" for f in FIELDS)
            label = f"Pane {k + 1} ({views.KINDS.get(kind, kind)})"
            if kind not in views.KINDS:
                raise StudioError(f"Pane {k + 1} has no variant kind picked (got {kind!r}).",
                                  f"pick one of: {', '.join(views.KINDS.values())}.")
            if kind in views.NEEDS_ADAPTER and not adapter:
                raise StudioError(f"{label} needs an adapter, and none is picked.",
                                  "attach an adapter in the Models tab, then pick it here (or pick another kind).")
            if kind in views.NEEDS_KB:
                kbs = kbs if kbs is not None else self._kb_names()
                if kb not in kbs:
                    raise StudioError(f"{label} needs a knowledge base, and " + (f"there is none named {kb!r}." if kb else
                                      "none is picked."), "build one in the RAG tab (the sample help centre is one "
                                      "click), then pick it here." if not kbs else f"pick one of: {', '.join(kbs)}.")
            variants.append(Variant(views.pane_name(kind, adapter, kb, preset), adapter if kind in views.NEEDS_ADAPTER else None,
                                    self._preset(preset) if kind == "prompt" else None, kb if kind in views.NEEDS_KB else None))
        names = [v.name for v in variants]
        for j, name in enumerate(names):
            if name in names[:j]:
                raise StudioError(f"Panes {names.index(name) + 1} and {j + 1} are the same variant ({name}).",
                                  "change one of them, or use fewer panes.")
        return variants

    def _preset(self, name: str) -> PromptSpec:
        if not name:
            return PromptSpec()
        return PromptSpec.from_dict(self.workspace.load_preset(name).get("prompt", {})).validate()

    def _kb_names(self, quiet: bool = False) -> list[str]:
        try:
            return self.rag.names()
        except StudioError:
            if quiet:
                return []  # Chroma unreachable: a RAG pane says so when it is sent
            raise

    def _check_loaded(self) -> None:
        state = self.runtime.state
        if state.loading and not self.models.is_loaded:
            raise GenerationError(f"{short_name(state.loading)} is still loading.",
                                  "wait until the header shows it loaded, then send again.")
        if not self.models.is_loaded:
            raise GenerationError("No model is loaded.", "load one in the Models tab, then send again.")

    # Votes ------------------------------------------------------------------------------------------
    def vote(self, verdict: str | None, note: str, session: dict[str, Any]) -> tuple[Any, ...]:
        """Save the vote on the last answers (in the order shown) and reveal the names behind the letters."""
        with user_errors():
            turn = session.get("turn")
            if not turn:
                raise StudioError("There are no finished answers to vote on.",
                                  "send a message and wait until every pane has answered.")
            if turn["voted"]:
                raise StudioError("This turn already has your vote.", "send the next message to vote again.")
            if not verdict:
                raise StudioError("No answer is picked.", "pick which answer is better, then press Vote.")
            order = session["order"]
            saved = record_vote(self.workspace, turn["prompt"], [turn["answers"][i] for i in order],
                                [session["names"][i] for i in order], verdict, note or "")
        session = {**session, "revealed": True, "turn": {**turn, "voted": True}}
        return (*_revealed(session), views.vote_markdown(saved), gr.update(value=None), "")

    def reveal(self, session: dict[str, Any]) -> tuple[Any, ...]:
        if not session.get("order"):
            return (session, *([gr.update()] * (3 * MAX_PANES)), "Nothing to reveal yet: send a message first.")
        session = {**session, "revealed": True}
        letters = views.letters(len(session["order"]))
        names = {letter: session["names"][i] for letter, i in zip(letters, session["order"])}
        return (*_revealed(session), "Revealed without a vote. " + views.reveal_line(names))

    def export(self, kind: str) -> tuple[Any, str]:
        """Write the votes as DPO pairs or SFT examples under the workspace's exports/ (downloadable)."""
        with user_errors():
            path, rows = export_votes(self.workspace, kind)
        return gr.update(value=str(path), visible=True), views.export_markdown(kind, path, rows)


class _Turn:
    """One message's streaming: what each pane shows, in display order, frame by frame."""

    def __init__(self, session: dict[str, Any], histories: list[list[dict[str, str]]], message: str,
                 previous: dict[str, Any] | None) -> None:
        self.session, self.histories, self.message, self.previous = session, histories, message, previous
        self.order = session["order"]
        self.texts = [""] * len(histories)
        self.stats: list[tuple[str, str]] = [("", "")] * len(histories)  # (full, blind) per pane
        self.sources = [""] * len(histories)
        self.answers: dict[int, Any] = {}

    @property
    def hidden(self) -> bool:
        return self.session["blind"] and not self.session["revealed"]

    def frame(self, status: str) -> tuple[Any, ...]:
        """(session, message box, titles, chats, stats, sources, verdict, status) for the page."""
        chats, stats, sources = [], [], []
        for pane in self.order:
            chats.append([*self.histories[pane], {"role": "user", "content": self.message},
                          {"role": "assistant", "content": self.texts[pane]}])
            full, blind = self.stats[pane]
            if pane not in self.answers:
                full = blind = "_Generating…_" if self.texts[pane] else "_Waiting for the first token…_"
            stats.append(blind if self.hidden else full)
            sources.append("" if self.hidden else self.sources[pane])
        pad = [gr.update()] * (MAX_PANES - len(self.order))
        verdict = gr.update(choices=views.verdict_choices(len(self.order)), value=None)
        return (self.session, "", *_titles(self.session["names"], self.session["blind"], self.session),
                *chats, *pad, *stats, *pad, *sources, *pad, verdict, status)

    def follow(self, events: Iterator[Any]) -> Iterator[tuple[Any, ...]]:
        shown_at = 0.0
        for event in events:
            first_token = False
            if event.kind == "text":
                first_token = not self.texts[event.pane]
                self.texts[event.pane] += event.payload
            elif event.kind == "sources":
                self.sources[event.pane] = views.sources_html(event.payload)
            else:
                self._done(event.pane, event.payload)
            now = time.monotonic()
            # Sources, finished panes and each pane's first token show at once (time to first token is visible however
            # fast the model is); the tokens after it are batched into frames at most every YIELD_EVERY_S.
            if event.kind != "text" or first_token or now - shown_at >= YIELD_EVERY_S:
                shown_at = now
                yield self.frame("_Generating…_")

    def _done(self, pane: int, answer: Any) -> None:
        self.answers[pane], self.texts[pane] = answer, answer.text
        self.stats[pane] = tuple(views.stats_line(answer.stats, blind, answer.no_context) for blind in (False, True))
        if answer.rag is not None:
            self.sources[pane] = views.sources_html(answer.rag.search, answer.rag)

    def finished(self) -> tuple[Any, ...]:
        if len(self.answers) == len(self.order):
            self.session["turn"] = {"prompt": [*views.shared_context(self.histories), {"role": "user", "content": self.message}],
                                    "answers": [self.answers[i].text for i in range(len(self.order))],
                                    "stats": self.stats, "sources": self.sources, "voted": False}
        return self.frame("**Which answer is better?** Vote to reveal the names." if self.hidden else
                          "Vote for the best answer to save it as a preference.")

    def restore(self, message: str) -> tuple[Any, ...]:
        """The page as it was before this message (conversations, last stats and sources), the message back in the box."""
        chats = [list(self.histories[pane]) for pane in self.order]
        pad = [gr.update()] * (MAX_PANES - len(self.order))
        before = self.previous or {"stats": [("", "")] * len(self.order), "sources": [""] * len(self.order)}
        stats = [before["stats"][pane][1 if self.hidden else 0] for pane in self.order]
        sources = ["" if self.hidden else before["sources"][pane] for pane in self.order]
        self.session["turn"] = self.previous
        return (self.session, message, *_titles(self.session["names"], self.session["blind"], self.session),
                *chats, *pad, *stats, *pad, *sources, *pad, gr.update(), "")


def _names(count: int, pick: dict[str, Any]) -> list[str]:
    return [views.pane_name(*(pick.get(f"pane{k + 1}_{f}") or "" for f in FIELDS)) for k in range(count)]


def _titles(names: list[str], blind: bool, session: dict[str, Any]) -> list[Any]:
    """Each shown pane's heading: a letter while blind and not yet revealed, else the letter and the name."""
    same = session.get("names") == names and len(session.get("order") or []) == len(names)
    order = session["order"] if same else list(range(len(names)))
    hidden = bool(blind) and not (same and session.get("revealed"))
    letters = views.letters(len(names))
    shown = [views.pane_title(letters[k], names[i], hidden, bool(blind)) for k, i in enumerate(order)]
    return shown + [gr.update()] * (MAX_PANES - len(names))


def _revealed(session: dict[str, Any]) -> tuple[Any, ...]:
    """(session, titles, stats, sources) once the names are shown: full stats and every RAG pane's sources."""
    turn = session.get("turn") or {}
    order = session["order"]
    pad = [gr.update()] * (MAX_PANES - len(order))
    stats = [turn["stats"][i][0] for i in order] if turn else [gr.update()] * len(order)
    sources = [turn["sources"][i] for i in order] if turn else [gr.update()] * len(order)
    return (session, *_titles(session["names"], session["blind"], session), *stats, *pad, *sources, *pad)


def _changed(current: Any, new: Any, choices: list[Any] | None = None) -> Any:
    """An update that sets `new` only where it differs from `current`: re-setting an unchanged value could undo
    a click the user made while the tab was still fetching its choices."""
    extra = {} if choices is None else {"choices": choices}
    return gr.update(**extra) if new == current else gr.update(value=new, **extra)


def _keep(value: str | None, choices: list[str]) -> str:
    return value if value and value in choices else (choices[0] if choices else "")


def _retrieval(values: dict[str, Any]) -> RetrievalParams:
    return RetrievalParams(mode=values["retrieval_mode"], top_k=values["retrieval_top_k"],
                           min_similarity=values["retrieval_min_similarity"])


def _answer(values: dict[str, Any]) -> AnswerParams:
    return AnswerParams(answer_without_context=bool(values["answer_without_context"]))
