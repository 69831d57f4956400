"""Blind-compare votes: one JSON line per vote under <workspace>/votes/votes.jsonl, and their exports.

A vote stores the answers in the order they were shown (A, B, ...) with the hidden pane labels in
the same order, so recording it is what unmasks the labels. Exports turn votes with a winner into
preference pairs (TRL's DPO trainer reads the conversational `prompt`/`chosen`/`rejected` format)
and SFT examples (`{"messages": [..., chosen answer]}`, the studio's chat dataset format).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.errors import StudioError
from studio.storage.runs import append_jsonl, read_jsonl
from studio.storage.workspace import Workspace, write_atomic

Message = dict[str, str]
TIE, BOTH_BAD = "tie", "both_bad"


@dataclass
class Vote:
    prompt: list[Message]  # the conversation the answers reply to (a text prompt becomes one user message)
    answers: list[str]  # in display order: answers[0] was shown as A
    labels: list[str]  # the pane names hidden behind A, B, ... (same order)
    verdict: str  # a letter, or "tie" / "both_bad" (two panes only)
    note: str = ""
    created: float = 0.0

    @property
    def letters(self) -> list[str]:
        return [chr(ord("A") + k) for k in range(len(self.answers))]

    @property
    def revealed(self) -> dict[str, str]:
        """Letter → pane name: what the UI shows once the vote is in."""
        return dict(zip(self.letters, self.labels))

    @property
    def winner(self) -> int | None:
        """Display index of the chosen answer; None for a tie or both bad."""
        return self.letters.index(self.verdict) if self.verdict in self.letters else None


def votes_file(workspace: Workspace) -> Path:
    return workspace.root / "votes" / "votes.jsonl"


def record_vote(workspace: Workspace, prompt: str | list[Message], answers_by_pane: list[str], labels: list[str],
                verdict: str, note: str = "") -> Vote:
    """Append a vote and return it (its `revealed` maps letters to pane names).

    `answers_by_pane` and `labels` are in display order. `verdict` is the letter of the best answer,
    or for two panes also "tie" or "both_bad". Raises StudioError for a verdict that names no shown
    pane, mismatched answers and labels, or an empty prompt.
    """
    messages = _prompt_messages(prompt)
    if len(answers_by_pane) != len(labels) or len(answers_by_pane) < 2:
        raise StudioError(f"A vote needs two or more answers with one label each, got {len(answers_by_pane)} answers "
                          f"and {len(labels)} labels.", "vote after every pane has answered.")
    vote = Vote(messages, [str(a) for a in answers_by_pane], [str(x) for x in labels], str(verdict).strip(), note, time.time())
    allowed = vote.letters + ([TIE, BOTH_BAD] if len(vote.answers) == 2 else [])
    if vote.verdict not in allowed:
        raise StudioError(f"Verdict {verdict!r} is not one of {', '.join(allowed)}.",
                          "pick the letter of the best answer" + (", tie or both_bad." if len(vote.answers) == 2 else "."))
    path = votes_file(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, asdict(vote))
    return vote


def read_votes(workspace: Workspace) -> list[Vote]:
    """Every vote recorded so far, oldest first (damaged lines skipped)."""
    out = []
    for row in read_jsonl(votes_file(workspace)):
        try:
            out.append(Vote(**{k: row[k] for k in ("prompt", "answers", "labels", "verdict", "note", "created")}))
        except (KeyError, TypeError):
            continue
    return out


def preference_pairs(votes: list[Vote]) -> list[dict[str, Any]]:
    """One DPO pair per (winner, other answer) of every vote with a winner; ties and both-bad give none."""
    pairs = []
    for vote in votes:
        if vote.winner is None:
            continue
        chosen = vote.answers[vote.winner]
        for k, other in enumerate(vote.answers):
            if k != vote.winner and other != chosen:
                pairs.append({"prompt": vote.prompt, "chosen": [{"role": "assistant", "content": chosen}],
                              "rejected": [{"role": "assistant", "content": other}]})
    return pairs


def sft_examples(votes: list[Vote]) -> list[dict[str, Any]]:
    """One chat example per vote with a winner: the prompt followed by the chosen answer."""
    return [{"messages": [*vote.prompt, {"role": "assistant", "content": vote.answers[vote.winner]}]}
            for vote in votes if vote.winner is not None and vote.answers[vote.winner].strip()]


def export_votes(workspace: Workspace, kind: str, path: Path | None = None) -> tuple[Path, int]:
    """Write the "preferences" or "sft" export as JSONL (default: the workspace's exports/); (path, rows).

    Raises StudioError for an unknown kind or when no vote has a winner yet.
    """
    builders = {"preferences": preference_pairs, "sft": sft_examples}
    if kind not in builders:
        raise StudioError(f"Unknown vote export {kind!r}.", "choose preferences (DPO pairs) or sft (chat examples).")
    rows = builders[kind](read_votes(workspace))
    if not rows:
        raise StudioError("No vote picks a better answer yet, so there is nothing to export.",
                          "vote for a best answer in blind compare (ties and both-bad are not exported).")
    path = path or workspace.exports_dir / f"votes-{kind}.jsonl"
    write_atomic(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return Path(path), len(rows)


def _prompt_messages(prompt: str | list[Message]) -> list[Message]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise StudioError("The vote has no prompt.", "send a message in compare before voting.")
        return [{"role": "user", "content": prompt}]
    messages = [{"role": m["role"], "content": m["content"]} for m in prompt
                if isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)]
    if len(messages) != len(prompt) or not messages or messages[-1]["role"] != "user":
        raise StudioError("The vote's prompt should be role/content messages ending with the user's message.",
                          "pass the conversation up to (and including) the message the panes answered.")
    return messages
