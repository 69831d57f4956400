"""Blind compare: seeded shuffles, votes that unmask the labels, and their DPO / SFT exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.core.compare import blind_labels, in_display_order, shuffle_panes
from studio.core.datasets import check_dataset
from studio.core.evaluation.runner import Variant
from studio.errors import StudioError
from studio.storage.votes import export_votes, read_votes, record_vote, votes_file
from studio.storage.workspace import Workspace

PANES = [Variant("base"), Variant("base+rag", knowledge_base="kb"), Variant("tuned", "a"), Variant("tuned+rag", "a", None, "kb")]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


def test_shuffle_is_deterministic_per_seed() -> None:
    orders = {tuple(shuffle_panes(PANES, seed)) for seed in range(20)}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len(orders) > 1
    assert shuffle_panes(PANES, 7) == shuffle_panes(PANES, 7)
    order = shuffle_panes(PANES, 7)
    assert in_display_order([p.name for p in PANES], order) == [PANES[i].name for i in order]
    assert blind_labels(3) == ["A", "B", "C"]


def test_a_vote_unmasks_the_labels_and_is_saved(workspace: Workspace) -> None:
    order = shuffle_panes(PANES[:2], 1)
    answers = in_display_order(["base says", "rag says"], order)
    labels = in_display_order([p.name for p in PANES[:2]], order)
    vote = record_vote(workspace, "How long is the warranty?", answers, labels, "B", note="cites the doc")
    assert vote.revealed == {"A": labels[0], "B": labels[1]} and vote.winner == 1
    assert votes_file(workspace) == workspace.root / "votes" / "votes.jsonl"
    saved = read_votes(workspace)
    assert len(saved) == 1 and saved[0].labels == labels and saved[0].note == "cites the doc"
    assert saved[0].prompt == [{"role": "user", "content": "How long is the warranty?"}]


def test_bad_votes_say_what_to_fix(workspace: Workspace) -> None:
    with pytest.raises(StudioError, match="not one of A, B, C"):
        record_vote(workspace, "q", ["x", "y", "z"], ["a", "b", "c"], "tie")
    with pytest.raises(StudioError, match="one label each"):
        record_vote(workspace, "q", ["x", "y"], ["a"], "A")
    with pytest.raises(StudioError, match="no prompt"):
        record_vote(workspace, " ", ["x", "y"], ["a", "b"], "A")
    with pytest.raises(StudioError, match="ending with the user's message"):
        record_vote(workspace, [{"role": "assistant", "content": "hi"}], ["x", "y"], ["a", "b"], "A")
    with pytest.raises(StudioError, match="nothing to export"):
        export_votes(workspace, "sft")
    with pytest.raises(StudioError, match="Unknown vote export"):
        export_votes(workspace, "csv")


def test_exports_give_dpo_pairs_and_a_valid_sft_set(workspace: Workspace) -> None:
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Reset how?"}]
    record_vote(workspace, history, ["Hold reset 10 s.", "No idea."], ["tuned", "base"], "A")
    record_vote(workspace, "Warranty?", ["Two years [1].", "One year.", "Ask support.", "Maybe."], ["a", "b", "c", "d"], "A")
    record_vote(workspace, "Colour?", ["Blue.", "Red."], ["a", "b"], "tie")
    record_vote(workspace, "Size?", ["Big.", "Small."], ["a", "b"], "both_bad")

    path, count = export_votes(workspace, "preferences")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert count == len(rows) == 1 + 3  # one pair per loser of each vote with a winner; ties and both-bad give none
    assert rows[0] == {"prompt": history, "chosen": [{"role": "assistant", "content": "Hold reset 10 s."}],
                       "rejected": [{"role": "assistant", "content": "No idea."}]}
    assert {r["rejected"][0]["content"] for r in rows[1:]} == {"One year.", "Ask support.", "Maybe."}

    path, count = export_votes(workspace, "sft", workspace.root / "sft.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert count == 2 and rows[0]["messages"] == [*history, {"role": "assistant", "content": "Hold reset 10 s."}]
    report = check_dataset(path)
    assert not report.errors, report.errors
    assert len(report.examples) == 2
