"""Pure renderers for the Compare tab: pane names, titles, stats lines, compact sources and vote texts.

They take the core's dataclasses duck-typed (GenerationStats, SearchResult, RagAnswer, Vote), so
this module imports no ML library; the tab module only wires them to components.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from studio.core.evaluation.variants import NEEDS_ADAPTER, NEEDS_COLLECTION as NEEDS_KB
from studio.storage.votes import BOTH_BAD, TIE
from studio.ui.evaluate_tab import VARIANT_LABELS as KINDS  # noqa: F401  (the pane kinds are the evaluation's variants)
from studio.ui.rag_views import highlighted, where_label

if TYPE_CHECKING:
    from studio.core.generation import GenerationStats
    from studio.core.rag.answer import RagAnswer
    from studio.core.rag.retrieval import SearchResult
    from studio.storage.votes import Vote

DEFAULT_PRESET = ("Playground default prompt", "")
_USES = {"Tuned": "adapter", "RAG": "knowledge base", "preset": "preset"}
_PLAIN = {"Base": "no adapter, no retrieval", "Base + default prompt": "the Playground's default system prompt"}


def letters(count: int) -> list[str]:
    return [chr(ord("A") + k) for k in range(count)]


def pane_name(kind: str, adapter: str | None = None, kb: str | None = None, preset: str | None = None) -> str:
    """What a pane is called (unique per configuration): "Base", "Tuned (style-a) + RAG (support)"..."""
    if kind == "prompt":
        return f"Base + preset ({preset})" if preset else "Base + default prompt"
    head = f"Tuned ({adapter or '?'})" if kind in NEEDS_ADAPTER else "Base"
    return head + (f" + RAG ({kb or '?'})" if kind in NEEDS_KB else "")


def default_setup(adapters: Sequence[str], kbs: Sequence[str]) -> tuple[int, list[str]]:
    """(pane count, four kinds) to start with: Base / Base+RAG / Tuned / Tuned+RAG as far as there is an adapter
    and a knowledge base; a prompt-preset pane fills in so there are always two panes worth comparing."""
    kinds = ["base"] + (["rag"] if kbs else []) + (["tuned"] if adapters else []) + (["tuned+rag"] if adapters and kbs else [])
    count = max(2, len(kinds))
    spare = [k for k in ("prompt", "base", "rag", "tuned", "tuned+rag") if k not in kinds]
    return count, (kinds + spare)[:4]


def pane_title(letter: str, name: str, hidden: bool, blind: bool = False) -> str:
    """A pane's heading, always two lines so the panes stay level: the letter alone while blind; else the letter,
    the kind ("Tuned + RAG") and below it what the pane uses (adapter, knowledge base, preset)."""
    if hidden:
        return f"### {letter}\n<span class='cmp-muted'>hidden until you vote</span>"
    badge = " <span class='cmp-revealed'>revealed</span>" if blind else ""
    uses = [f"{_USES[what]} {value}" for what, value in re.findall(r"(Tuned|RAG|preset) \(([^)]*)\)", name)]
    details = " · ".join(uses) or _PLAIN.get(name, "")
    return f"### {letter} · {html.escape(re.sub(r' [(][^)]*[)]', '', name))}{badge}\n" \
           f"<span class='cmp-muted'>{html.escape(details)}</span>"


def stats_line(stats: GenerationStats, blind: bool = False, no_context: bool = False) -> str:
    """Time to first token, speed, tokens and why it stopped; the prompt size only when not blind
    (a RAG pane's long prompt would give it away)."""
    if no_context:
        return "No retrieved passage was relevant: answered that it does not know, without generating."
    line = (f"first token **{stats.time_to_first_token_s * 1000:.0f} ms** · **{stats.tokens_per_s:.1f}** tok/s · "
            f"{stats.completion_tokens} tokens · finished: {stats.finish_reason}")
    return line if blind else line + f" · prompt {stats.prompt_tokens} tokens"


def sources_html(result: SearchResult, answer: RagAnswer | None = None) -> str:
    """A RAG pane's sources, compact: one expandable line per retrieved chunk (document, page, heading), cited ones
    marked; numbered as the RAG tab numbers them."""
    if result.empty:
        dropped = f" ({result.below_threshold} below the relevance threshold)" if result.below_threshold else ""
        return f"<div class='cmp-sources'><p class='cmp-muted'>No passage retrieved{dropped}.</p></div>"
    cited = {c.block.item.chunk.id for c in answer.citations} if answer else set()
    rows = []
    for number, item in enumerate(result.chunks, start=1):
        mark = item.chunk.id in cited
        badge = "<span class='rag-badge rag-cited'>cited</span>" if mark else ""
        rows.append(f"<details class='cmp-source{' cmp-source-cited' if mark else ''}'><summary><b>[{number}]</b> "
                    f"{html.escape(where_label(item.chunk))} {badge}</summary>"
                    f"<div class='rag-text'>{highlighted(item.chunk.text, result.query)}</div></details>")
    head = f"{len(result.chunks)} sources from <b>{html.escape(result.knowledge_base)}</b>"
    if answer is not None:
        head += f" · {len(answer.citations)} cited" if answer.citations else " · none cited"
    return f"<div class='cmp-sources'><div class='cmp-muted'>{head}</div>{''.join(rows)}</div>"


def verdict_choices(count: int) -> list[tuple[str, str]]:
    """The vote's options: for two panes A, B, tie or both bad; with more, the best pane's letter."""
    if count == 2:
        return [("A is better", "A"), ("B is better", "B"), ("Tie", TIE), ("Both bad", BOTH_BAD)]
    return [(f"{letter} is best", letter) for letter in letters(count)]


def vote_markdown(vote: Vote) -> str:
    """What the vote recorded, and who was behind each letter."""
    if vote.winner is not None:
        head = f"**Vote saved:** {vote.verdict} ({html.escape(vote.labels[vote.winner])}) was best."
    else:
        head = "**Vote saved:** a tie." if vote.verdict == TIE else "**Vote saved:** both answers were bad."
    return head + " " + reveal_line(vote.revealed)


def reveal_line(revealed: dict[str, str]) -> str:
    return "Behind the letters: " + " · ".join(f"**{k}** = {html.escape(v)}" for k, v in revealed.items())


def shared_context(histories: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, str]]:
    """The earlier turns every pane had in common: the context a vote's answers all reply to.

    After a first turn the panes' histories hold different answers, so a later vote's prompt is
    the new message alone rather than one pane's conversation.
    """
    common: list[dict[str, str]] = []
    for turn in zip(*histories):
        if any(m != turn[0] for m in turn[1:]):
            break
        common.append(dict(turn[0]))
    while common and common[-1]["role"] != "assistant":  # whole exchanges only: the new message follows an answer
        common.pop()
    return common


def export_markdown(kind: str, path: Any, rows: int) -> str:
    plural = "" if rows == 1 else "s"
    if kind == "sft":
        return (f"**{rows} chat example{plural}** written to `{path}` (the chosen answer after each prompt). "
                "The Training tab accepts this file as a chat (messages) dataset: upload it there or paste its path.")
    return (f"**{rows} preference pair{plural}** written to `{path}` (conversational prompt / chosen / rejected: the "
            "format TRL's DPO trainer reads).")


COMPARE_CSS = """
#compare-panes { gap: 10px; }
.cmp-slot { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 8px 10px !important; }
.cmp-title h3 { margin: 0; font-size: var(--text-lg); }
.cmp-title h3, .cmp-title p { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; margin-bottom: 0; }
.cmp-muted { color: var(--body-text-color-subdued); font-size: var(--text-sm); }
.cmp-revealed { background: var(--color-accent); color: white; border-radius: 4px; padding: 0 6px; font-size: var(--text-xs);
                vertical-align: middle; }
.cmp-stats { color: var(--body-text-color-subdued); font-size: var(--text-sm); min-height: 1.5em; }
.cmp-sources { font-size: var(--text-sm); }
.cmp-source { border-left: 3px solid var(--border-color-primary); padding: 2px 8px; margin: 4px 0; }
.cmp-source-cited { border-left-color: var(--color-accent); }
.cmp-source summary { cursor: pointer; }
"""
