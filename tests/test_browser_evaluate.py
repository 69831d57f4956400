"""The Evaluate tab in headless Chromium: the sample held-out set, limited to a few examples, scored by two variants.

The tiny test model is random, so it is first taught (a few seconds of overfitting) to answer the sample set's
first question with its reference: the base variant then gets that example right and the prompt variant, whose
system prompt differs, does not, which the scorecard, the chart and the drill-down must all show.
Set STUDIO_UPDATE_SCREENSHOTS=1 to refresh assets/screenshots/evaluate.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_studio
from studio.ui.evaluate_tab import SAMPLE_EVAL
from test_browser import ROOT, chromium, page, teach  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

README_SCREENSHOT = ROOT / "assets" / "screenshots" / "evaluate.png"
LIMIT = 3


@pytest.fixture(scope="module")
def studio(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """The launched studio with the tiny model taught the sample set's first answer."""
    from studio.config import LoadParams
    from studio.core.evaluation.data import load_examples

    if not SAMPLE_EVAL.is_file():
        pytest.skip(f"{SAMPLE_EVAL} is missing")
    first = load_examples(SAMPLE_EVAL, 1)[0]
    taught = teach(tiny_model_dir, tmp_path_factory.mktemp("models") / "knows-first", first.messages, first.reference,
                   max_steps=200)
    with running_studio(tmp_path_factory.mktemp("studio-home")) as (url, services):
        services.runtime.load(LoadParams(model=str(taught), device="cpu"))
        yield url, services


def test_score_the_sample_set_and_drill_into_an_example(page: Any, studio: tuple[str, Any], tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    from studio.core.evaluation import store
    from studio.core.evaluation.data import load_examples

    url, services = studio
    examples = load_examples(SAMPLE_EVAL, LIMIT)
    page.goto(url)
    expect(page.locator("#model-header")).to_contain_text("Model:")
    page.get_by_role("tab", name="Evaluate").click()
    setup = page.locator("#eval-setup")
    setup.get_by_role("button", name="Use the sample evaluation set").click()
    expect(page.locator("#eval-data-summary")).to_contain_text("110 examples")
    limit = setup.get_by_label("Limit (first N examples)")
    limit.fill(str(LIMIT))
    limit.press("Enter")
    expect(page.locator("#eval-data-summary")).to_contain_text(f"the first {LIMIT} will be evaluated")
    setup.get_by_text("Generation parameters").click()
    tokens = setup.get_by_label("number input for Max new tokens")
    tokens.fill("320")
    tokens.press("Enter")

    setup.get_by_role("button", name="Run evaluation").click()
    expect(page.locator("#eval-progress")).to_contain_text(f"Done: {LIMIT} examples × 2 variants", timeout=240_000)
    run = store.load_run(services.workspace.evals_dir / store.list_runs(services.workspace)[0])
    assert run.results[0].answers["base"].scores.exact_match == 1.0  # the taught answer, scored in the browser's run

    table = page.locator("#eval-table")
    for text in ("rouge_l", "fact_recall", "schema_valid", "base", "prompt"):
        expect(table).to_contain_text(text)
    expect(page.locator("#eval-verdict")).to_contain_text("base is best on")
    expect(page.locator("#eval-verdict")).to_contain_text("is best on")
    expect(page.locator("#eval-plot .js-plotly-plot")).to_be_visible()
    expect(page.locator("#eval-plot")).to_contain_text("Fact recall")

    detail = page.locator("#eval-detail")
    expect(detail).to_contain_text(examples[0].question)
    expect(detail.locator(".eval-card")).to_have_count(2)
    expect(detail.locator(".eval-best")).to_contain_text("Learning your home")  # base got it right, and is outlined
    page.locator("#eval-example input").click()
    page.get_by_role("option", name="2 · line 2").click()
    expect(detail).to_contain_text(examples[1].question)
    expect(detail).to_contain_text("Example 2 of 3")

    page.locator("#eval-example input").click()
    page.get_by_role("option", name="1 · line 1").click()  # back to the example the base gets right, for the picture
    expect(detail.locator(".eval-best")).to_contain_text("Learning your home")
    shot = tmp_path / "evaluate.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, README_SCREENSHOT)
