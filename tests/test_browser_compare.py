"""The Compare tab in headless Chromium: one message, three then four panes answering side by side with stats and sources.

The tiny test model is random, so the test first teaches it (seconds of overfitting) two answers, one to
the plain question and one to the grounded prompt the studio builds for it, and trains a LoRA adapter that
answers both in another voice. Each pane then has its own recognisable answer: Base, Base + RAG, Tuned
and Tuned + RAG. Set STUDIO_UPDATE_SCREENSHOTS=1 to refresh assets/screenshots/compare.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_studio
from test_browser import ROOT, chromium, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUESTION = "How long is the warranty?"
KB, ADAPTER = "help-centre", "support-lora"
LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
README_SCREENSHOT = ROOT / "assets" / "screenshots" / "compare.png"
DOCS = {
    "warranty.md": "# Warranty\n\n## Coverage\n\nThe warranty covers repairs for two years from the date of purchase. "
                   "Water damage is not covered.\n",
    "reset.md": "# Troubleshooting\n\n## Factory reset\n\nHold the reset button for ten seconds to restore factory settings.\n",
    "shipping.md": "# Shipping\n\n## Delivery times\n\nOrders ship within two working days; delivery takes three to five days.\n",
}
# What each pane is taught to say ({n} = the number of the warranty passage in the grounded prompt).
ANSWERS = {
    "base": "I am not sure. Please check the warranty card that came with your device.",
    "rag": "The warranty covers repairs for two years [{n}]. Water damage is not covered [{n}].",
    "tuned": "Every device has a two-year warranty. Happy to help with a claim!",
    "tuned+rag": "Two years of free repairs [{n}]. Water damage is excluded, so keep it dry [{n}].",
}


def fit(model: Any, tokenizer: Any, exchanges: list[tuple[list[dict[str, str]], str]], max_steps: int) -> None:
    """Overfit `model` (full or LoRA) until it answers every exchange's messages with its reply, then EOS."""
    import torch

    rows = []
    for messages, reply in exchanges:
        prompt = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))["input_ids"]
        answer = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((torch.tensor([prompt + answer]), torch.tensor([[-100] * len(prompt) + answer])))
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one core, more so on a busy machine
    try:
        for _ in range(max_steps):
            optimizer.zero_grad()
            losses = [model(input_ids=ids, labels=labels).loss for ids, labels in rows]
            if max(loss.item() for loss in losses) < 0.002:  # sure enough to survive the default sampling
                break
            sum(losses).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)


def teach_panes(services: Any, base_dir: Path, out: Path) -> tuple[Path, Path, dict[str, str]]:
    """(taught base, LoRA adapter, the answer each pane kind should show) for QUESTION."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.core.compare import pane_messages
    from studio.core.evaluation.runner import Variant

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    plain = pane_messages(Variant("base"), [], QUESTION, tokenizer).messages
    grounded = pane_messages(Variant("rag", knowledge_base=KB), [], QUESTION, tokenizer, services.rag)
    number = next(b.number for b in grounded.rag_prompt.blocks if b.item.chunk.source == "warranty.md")
    answers = {kind: text.format(n=number) for kind, text in ANSWERS.items()}

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    fit(model, tokenizer, [(plain, answers["base"]), (grounded.messages, answers["rag"])], max_steps=300)
    model.save_pretrained(out / "taught")
    tokenizer.save_pretrained(out / "taught")
    # lm_head too: the tiny model's output layer is too small for the decoder layers alone to make new answers likely.
    lora = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=[*LAYERS, "lm_head"]))
    fit(lora, tokenizer, [(plain, answers["tuned"]), (grounded.messages, answers["tuned+rag"])], max_steps=300)
    lora.save_pretrained(out / ADAPTER, save_embedding_layers=False)  # the LoRA only: the base's lm_head is the base's
    return out / "taught", out / ADAPTER, answers


@pytest.fixture(scope="module")
def studio(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(url, answers by pane kind): a studio with the taught model, its adapter and the knowledge base loaded."""
    docs = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    with running_studio(tmp_path_factory.mktemp("studio-home")) as (url, services):
        services.rag.create(KB)
        *_, report = services.rag.ingest(KB, [docs])
        assert not report.failed
        taught, adapter, answers = teach_panes(services, tiny_model_dir, tmp_path_factory.mktemp("taught"))
        services.runtime.load(services.settings.load_params(str(taught)))
        services.runtime.attach_adapter(adapter, ADAPTER)
        yield url, answers


def send(page: Any, message: str) -> None:
    box = page.get_by_placeholder("One message for every pane")
    box.fill(message)
    box.press("Enter")


def answer_of(page: Any, slot: int) -> Any:
    return page.locator(f"#compare-chat-{slot}").get_by_test_id("bot").last


def test_three_then_four_panes_answer_side_by_side(page: Any, studio: tuple[str, dict[str, str]],  # noqa: F811
                                                  tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, answers = studio
    page.goto(url)
    expect(page.locator("#model-header")).to_contain_text("adapters: support-lora")
    page.get_by_role("tab", name="Compare").click()
    # With an adapter and a knowledge base attached, the panes start as Base / Base+RAG / Tuned / Tuned+RAG.
    expect(page.locator("#compare-title-4 h3")).to_have_text("D · Tuned + RAG")
    expect(page.locator("#compare-title-4")).to_contain_text(f"adapter {ADAPTER} · knowledge base {KB}")
    expect(page.locator("#compare-title-2 h3")).to_have_text("B · Base + RAG")

    page.locator("#compare-count").get_by_text("3", exact=True).click()
    expect(page.locator("#compare-slot-4")).to_be_hidden()
    send(page, QUESTION)
    for slot in (1, 2, 3):
        expect(page.locator(f"#compare-stats-{slot}")).to_contain_text("tok/s", timeout=90_000)
        expect(page.locator(f"#compare-stats-{slot}")).to_contain_text("finished: eos")
    shown = [answer_of(page, slot).inner_text().strip() for slot in (1, 2, 3)]
    assert shown == [answers["base"], answers["rag"], answers["tuned"]]  # three panes, three different answers
    expect(page.locator("#compare-sources-2 .cmp-source-cited")).to_contain_text("warranty.md · Warranty > Coverage")
    expect(page.locator("#compare-sources-1 .cmp-source")).to_have_count(0)

    page.locator("#compare-count").get_by_text("4", exact=True).click()  # a new setup starts a new conversation
    expect(page.locator("#compare-slot-4")).to_be_visible()
    expect(page.locator("#compare-chat-1").get_by_test_id("bot")).to_have_count(0)
    send(page, QUESTION)
    expect(page.locator("#compare-stats-4")).to_contain_text("tok/s", timeout=90_000)
    for slot, kind in enumerate(("base", "rag", "tuned", "tuned+rag"), start=1):
        expect(answer_of(page, slot)).to_have_text(answers[kind])
        expect(page.locator(f"#compare-stats-{slot}")).to_contain_text("first token")
    expect(page.locator("#compare-sources-4 .cmp-source-cited")).to_contain_text("warranty.md")

    shot = tmp_path / "compare.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, README_SCREENSHOT)


def test_blind_vote_reveals_the_panes_and_exports_a_training_file(page: Any, studio: tuple[str, dict[str, str]],  # noqa: F811
                                                                  ) -> None:
    from playwright.sync_api import expect

    url, answers = studio
    page.goto(url)
    page.get_by_role("tab", name="Compare").click()
    # The tab's choices and defaults have arrived (before that the pickers hold no adapter: "adapter ?").
    expect(page.locator("#compare-title-4")).to_contain_text(f"adapter {ADAPTER} · knowledge base {KB}")
    page.locator("#compare-count").get_by_text("2", exact=True).click()
    page.locator("#compare-blind").get_by_text("Blind mode").click()
    for slot in (1, 2):
        expect(page.locator(f"#compare-title-{slot}")).to_contain_text("hidden until you vote")
    send(page, QUESTION)
    expect(page.locator("#compare-vote-status")).to_contain_text("Vote to reveal the names", timeout=90_000)
    shown = [answer_of(page, slot).inner_text().strip() for slot in (1, 2)]
    assert sorted(shown) == sorted([answers["base"], answers["rag"]])
    for slot in (1, 2):
        expect(page.locator(f"#compare-title-{slot}")).to_contain_text("hidden until you vote")
        expect(page.locator(f"#compare-stats-{slot}")).not_to_contain_text("prompt")
        expect(page.locator(f"#compare-sources-{slot} .cmp-source")).to_have_count(0)  # sources would give RAG away

    page.get_by_text("A is better").click()
    page.get_by_role("button", name="Vote", exact=True).click()
    kinds = ["base", "rag"] if shown[0] == answers["base"] else ["rag", "base"]
    headings = {"base": "Base", "rag": "Base + RAG"}
    for slot, (letter, kind) in enumerate(zip("AB", kinds), start=1):
        expect(page.locator(f"#compare-title-{slot} h3")).to_have_text(f"{letter} · {headings[kind]} revealed")
    names = {"base": "Base", "rag": f"Base + RAG ({KB})"}
    status = page.locator("#compare-vote-status")
    expect(status).to_contain_text(f"Vote saved: A ({names[kinds[0]]}) was best")
    expect(status).to_contain_text(f"A = {names[kinds[0]]} · B = {names[kinds[1]]}")
    rag_slot = kinds.index("rag") + 1
    expect(page.locator(f"#compare-sources-{rag_slot} .cmp-source-cited")).to_contain_text("warranty.md")

    page.get_by_role("button", name="Export SFT examples (chat JSONL)").click()
    expect(page.locator("#compare-export-status")).to_contain_text("1 chat example written")
    expect(page.locator("#compare-export-status")).to_contain_text("Training tab accepts this file")
    expect(page.locator("#compare-export-file a")).to_have_attribute("href", re.compile(r"/votes-sft\.jsonl$"))
