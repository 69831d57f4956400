"""The RAG tab in headless Chromium: create a knowledge base, import the sample docs in one click, ask, see the citation.

The tiny test model is random, so after the UI has ingested the docs the test teaches it (a few
seconds of overfitting) to answer the exact grounded prompt the studio builds for QUESTION with a
sentence that cites the warranty passage; the browser then has to show that answer, the citation
and the cited source with its heading. Set STUDIO_UPDATE_SCREENSHOTS=1 to refresh assets/screenshots/rag.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio.core.rag.service import SAMPLE_DOCS as DOCS
from studio.core.rag.service import SAMPLE_KB
from conftest import running_studio
from test_browser import ROOT, chromium, page, teach  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUESTION = "How many days do I have to register the warranty?"
README_SCREENSHOT = ROOT / "assets" / "screenshots" / "rag.png"


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    if not DOCS.is_dir():
        pytest.skip(f"{DOCS} is missing")
    with running_studio(tmp_path_factory.mktemp("studio-home")) as launched:
        yield launched


def teach_grounded_answer(services: Any, base_dir: Path, out_dir: Path) -> tuple[Path, int]:
    """Teach the tiny model to answer QUESTION's grounded prompt, citing the warranty-registration passage."""
    from transformers import AutoTokenizer

    from studio.core.rag.answer import build_prompt
    from studio.core.rag.params import AnswerParams

    result = services.rag.search(SAMPLE_KB, QUESTION)
    prompt = build_prompt(QUESTION, result.chunks, AutoTokenizer.from_pretrained(base_dir), AnswerParams())
    number = next((b.number for b in prompt.blocks if b.item.chunk.source == "warranty.md" and "60 days" in b.item.chunk.text),
                  None)
    assert number is not None, f"retrieval missed the registration passage: {[b.text[:80] for b in prompt.blocks]}"
    reply = f"Register within 60 days of installation to keep the full 10-year term [{number}]."
    return teach(base_dir, out_dir, prompt.messages, reply, max_steps=200), number


def test_import_sample_docs_then_ask_a_cited_question(page: Any, studio: tuple[str, Any], tiny_model_dir: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, services = studio
    page.goto(url)
    page.get_by_role("tab", name="RAG").click()
    expect(page.locator("#rag-kb-summary")).to_contain_text("No knowledge base picked")
    page.get_by_text("New knowledge base").click()
    page.get_by_label("Name").fill("help-centre")
    page.get_by_role("button", name="Create knowledge base").click()
    expect(page.locator("#rag-kb-summary")).to_contain_text("help-centre · 0 documents")

    page.get_by_role("button", name=f"Import the sample help centre ({SAMPLE_KB})").click()  # one click
    status = page.locator("#rag-ingest-status")
    expect(status).to_contain_text("Done.", timeout=300_000)
    count = len([p for p in DOCS.iterdir() if p.is_file()])
    expect(status).to_contain_text(f"{count} added")
    expect(page.locator("#rag-kb-summary")).to_contain_text(f"{SAMPLE_KB} · {count} documents")
    first = min(p.name for p in DOCS.iterdir() if p.is_file())
    expect(page.locator("#rag-documents")).to_contain_text(first)  # the table scrolls: the first row is rendered
    assert "warranty.md" in {d.name for d in services.rag.documents(SAMPLE_KB)}

    taught, number = teach_grounded_answer(services, tiny_model_dir, tmp_path / "taught")
    services.runtime.load(services.settings.load_params(str(taught)))

    page.get_by_placeholder("Ask a question about your documents").fill(QUESTION)
    page.get_by_role("button", name="Ask", exact=True).click()
    stats = page.locator("#rag-stats")
    expect(stats).to_contain_text("tok/s", timeout=90_000)
    expect(page.locator("#rag-answer")).to_contain_text(f"within 60 days of installation to keep the full 10-year term [{number}]")
    citations = page.locator("#rag-citations")
    expect(citations).to_contain_text(f"[{number}] warranty.md")
    expect(citations).to_contain_text("Register within 60 days")  # the cited chunk's heading
    cited = page.locator("#rag-sources .rag-source-cited")
    expect(cited).to_have_count(1)
    expect(cited).to_contain_text("warranty.md")

    shot = tmp_path / "rag.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, README_SCREENSHOT)

    page.get_by_role("tab", name="Retrieval inspector").click()
    page.get_by_placeholder("A query to inspect").fill(QUESTION)
    page.get_by_role("button", name="Inspect").click()
    expect(page.get_by_text("Search time:")).to_be_visible()
    expect(page.get_by_label("BM25 (keywords)")).to_contain_text("warranty.md")
