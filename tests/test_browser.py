"""The real UI in headless Chromium: every tab renders, a Playground message streams an answer and stats.

Needs /usr/bin/chromium (Debian: `apt-get install chromium`); skipped without it, except under CI=true.
Set STUDIO_UPDATE_SCREENSHOTS=1 to refresh assets/screenshots/playground.png (used by the README).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
ROOT = Path(__file__).resolve().parents[1]
README_SCREENSHOT = ROOT / "assets" / "screenshots" / "playground.png"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} is missing: install it with `apt-get install chromium` to run the browser tests."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    pytest.importorskip("playwright.sync_api")
    return CHROMIUM


REVIEW = "The hotel was spotless and the staff were lovely."


def teach(base_dir: Path, out_dir: Path, messages: list[dict[str, str]], reply: str, max_steps: int = 100) -> Path:
    """Overfit the tiny random model on one exchange, so the answer (and the screenshot) is readable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    prompt = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))["input_ids"]
    answer = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt + answer])
    labels = torch.tensor([[-100] * len(prompt) + answer])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one core, more so on a busy machine
    try:
        for _ in range(max_steps):
            optimizer.zero_grad()
            loss = model(input_ids=ids, labels=labels).loss
            if loss.item() < 0.01:
                break
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def taught_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_model_dir taught to answer the Playground's seed few-shot prompt for REVIEW with "positive"."""
    from studio.core.prompting import FEW_SHOT, build_messages, default_spec

    messages = build_messages(default_spec(FEW_SHOT), [], REVIEW)
    return teach(tiny_model_dir, tmp_path_factory.mktemp("models") / "tiny-sentiment", messages, "positive")


@pytest.fixture(scope="module")
def studio_url(taught_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A launched studio that starts loading the model in the background, as `studio --model` does."""
    from studio.app import launch
    from studio.config import Settings
    from studio.services import Services

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(workspace=tmp_path_factory.mktemp("studio-home"), port=port, model=str(taught_model_dir))
    services = Services.build(settings)
    services.runtime.load_in_background(settings.load_params())
    app = launch(services, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture
def page(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def test_every_tab_renders_and_a_playground_message_streams(page: Any, studio_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(studio_url)
    expect(page.get_by_text("LLM Adaptation Studio").first).to_be_visible()
    expect(page.locator("#model-header")).to_contain_text("Model:", timeout=90_000)  # the background load finished

    page.get_by_role("tab", name="Models").click()
    expect(page.locator("#model-status")).to_contain_text("Loaded")
    expect(page.get_by_text("Memory in use")).to_be_visible()
    expect(page.get_by_role("button", name="Attach adapter")).to_be_visible()

    page.screenshot(path=str(tmp_path / "models.png"), full_page=True)

    page.get_by_role("tab", name="Playground").click()
    page.get_by_label("Prompting technique").click()
    page.get_by_role("option", name="Few-shot", exact=True).click()
    expect(page.get_by_text("The battery lasts all day").first).to_be_visible()
    box = page.get_by_placeholder("Type a message and press Enter")
    box.fill(REVIEW)
    expect(page.get_by_text("built with the model's own chat template")).to_be_visible()
    box.press("Enter")
    stats = page.locator("#generation-stats")
    expect(stats).to_contain_text("tok/s", timeout=90_000)
    expect(stats).to_contain_text("finished: eos")
    expect(page.get_by_test_id("bot").last).to_have_text("positive")

    shot = tmp_path / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)
