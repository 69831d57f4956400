"""The Advisor tab in headless Chromium: answer the questionnaire, see the highlighted rung with the evaluation
numbers that back it, and the memory calculator on Qwen2.5-0.5B's real layer shapes (a config-only folder: the
calculator never reads weights). Set STUDIO_UPDATE_SCREENSHOTS=1 to refresh assets/screenshots/advisor.png.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_studio
from test_advisor import agg, make_run
from test_browser import ROOT, chromium, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

README_SCREENSHOT = ROOT / "assets" / "screenshots" / "advisor.png"
QWEN_05B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
            "torch_dtype": "bfloat16"}  # Qwen/Qwen2.5-0.5B-Instruct's config.json, the fields that set its shapes


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A studio whose workspace holds one evaluation run where tuned+rag beats rag and the prompt baseline."""
    from studio.core.evaluation import store

    home = tmp_path_factory.mktemp("studio-home")
    run = make_run({"prompt": agg(), "rag": agg(fact_recall=0.7),
                    "tuned+rag": agg(fact_recall=0.75, schema_valid=0.9, json_valid=0.95)}, "support-heldout")
    store.save_run(run, home)
    with running_studio(home) as launched:
        yield launched


def test_recommend_then_calculate_memory(page: Any, studio: tuple[str, Any], tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    qwen = tmp_path / "Qwen2.5-0.5B-Instruct"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps(QWEN_05B))
    page.goto(studio[0])
    page.get_by_role("tab", name="Advisor").click()
    page.get_by_label("Both").check()
    page.get_by_label("Monthly").check()
    page.get_by_label("100-1000").check()
    page.get_by_role("button", name="Recommend").click()
    advice = page.locator("#advisor-recommendation")
    expect(advice).to_contain_text("Recommendation: RAG + LoRA")
    expect(advice).to_contain_text("tuned+rag beats rag by 0.05 on fact recall")
    expect(advice).to_contain_text("runs read: support-heldout")
    expect(page.locator("#advisor-ladder .picked")).to_have_count(2)

    model = page.get_by_label("Model", exact=True)
    model.fill(str(qwen))
    model.press("Enter")
    page.get_by_role("button", name="Calculate memory").click()
    table = page.locator("#advisor-memory")
    expect(table).to_contain_text("QLoRA", timeout=60_000)
    expect(table).to_contain_text("494,032,768")  # Qwen2.5-0.5B's parameter count, from its shapes alone
    expect(page.locator("#advisor-verdicts")).to_contain_text("free")
    expect(page.locator("#advisor-plot .js-plotly-plot")).to_be_visible()

    shot = tmp_path / "advisor.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, README_SCREENSHOT)
