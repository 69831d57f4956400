"""The Advisor tab through the launched app's API (gradio_client, by api_name): the questionnaire's recommendation,
the evaluation numbers it cites, and the memory calculator on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_studio
from test_advisor import agg, make_run

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(client, services) of a launched studio with an empty workspace and no model loaded."""
    with running_studio(tmp_path_factory.mktemp("studio-home")) as (url, services):
        client = gradio_client.Client(url, verbose=False)
        yield client, services
        client.close()


def ask(client: Any, **answers: Any) -> tuple[str, str]:
    values = {"gap": "unsure", "facts_change": "rarely", "dataset_size": "none", "citations": False,
              "latency": "moderate", "hardware": "cpu", **answers}
    return client.predict(**values, api_name="/recommend")


def test_the_questionnaire_alone_gives_a_reasoned_rung(studio: tuple[Any, Any]) -> None:
    client, services = studio
    ladder, advice = ask(client, gap="behaviour", dataset_size="100-1000", hardware="gpu-small")
    assert advice.startswith("### Recommendation: QLoRA")
    assert "you have 100-1000 examples" in advice and "Your GPU is small (<12 GB)" in advice
    assert "PEFT: QLoRA" in ladder and ladder.count("✔ recommended") == 1
    assert "No evaluation runs yet" in advice and "Evaluate" in advice
    ladder, advice = ask(client, gap="knowledge", facts_change="daily", citations=True)
    assert advice.startswith("### Recommendation: RAG") and "Your facts change daily" in advice
    assert "You need citations" in advice and "advisor-rung picked" in ladder


def test_an_answer_outside_the_choices_is_refused(studio: tuple[Any, Any]) -> None:
    client, _ = studio  # the radio refuses it before the handler; Answers would name the field (test_advisor)
    with pytest.raises(AppError, match=r"'lots'.* is not in the list of choices: \['none', '<100', '100-1000', '>1000'\]"):
        ask(client, dataset_size="lots")


def test_a_saved_evaluation_run_is_cited_with_its_numbers(studio: tuple[Any, Any]) -> None:
    from studio.core.evaluation import store

    client, services = studio
    run = make_run({"prompt": agg(), "tuned": agg(schema_valid=0.4 + 0.01)}, "support-eval")
    store.save_run(run, services.workspace)
    try:
        ladder, advice = ask(client, gap="behaviour", dataset_size="100-1000", hardware="gpu-large")
    finally:
        store_dir = store.evals_dir(services.workspace) / "support-eval"
        for f in store_dir.iterdir():
            f.unlink()
        store_dir.rmdir()
    assert "runs read: `support-eval`" in advice
    assert ("tuned beats the prompt baseline by 0.00 on fact recall, 0.01 on schema validity, 0.00 on JSON validity, "
            "0.00 on ROUGE-L and 0.00 on exact match on 20 examples (run 'support-eval').") in advice
    assert advice.startswith("### Recommendation: Prompting") and "overrules the questionnaire" in advice
    assert "not yet earned the complexity" in advice and "PEFT" in ladder and "✔ recommended" in ladder


def test_memory_rows_match_peft_and_fit_this_machine(studio: tuple[Any, Any], tiny_model_dir: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    client, _ = studio
    table, verdicts, plot = client.predict(str(tiny_model_dir), 8, ["q_proj", "v_proj"], 2, 256, api_name="/memory")
    assert table["headers"][:3] == ["Method", "Trainable params", "Trainable share"]
    rows = {r[0]: r for r in table["data"]}
    assert list(rows) == ["Full fine-tuning", "LoRA", "QLoRA"]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    total = sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    trainable, _ = peft.get_nb_trainable_parameters()
    assert int(rows["Full fine-tuning"][1].replace(",", "")) == total
    assert int(rows["LoRA"][1].replace(",", "")) == int(rows["QLoRA"][1].replace(",", "")) == trainable
    assert all(r[-1] == "✔ fits" for r in rows.values())  # a tiny model fits any machine that runs the tests
    assert "free system RAM" in verdicts or "free GPU memory" in verdicts
    assert plot is not None


def test_a_missing_model_folder_or_uncached_hub_id_says_so(studio: tuple[Any, Any], tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    client, _ = studio
    missing = tmp_path / "no-such-model"
    with pytest.raises(AppError, match=f"The folder {missing} does not exist"):
        client.predict(str(missing), 16, ["all-linear"], 4, 1024, api_name="/memory")
    with pytest.raises(AppError, match="not in the local Hugging Face cache and offline mode is on.*Fix:"):
        client.predict("studio-tests/never-downloaded", 16, ["all-linear"], 4, 1024, api_name="/memory")
    with pytest.raises(AppError, match="No model given"):
        client.predict("", 16, ["all-linear"], 4, 1024, api_name="/memory")
    with pytest.raises(AppError, match="Value 4 is less than minimum value 16"):  # the number box's range
        client.predict(str(tiny_model_dir), 16, ["all-linear"], 4, 4, api_name="/memory")


def test_the_hardware_answer_is_preset_from_the_detected_device() -> None:
    from studio.ui.advisor_tab import detected_hardware

    assert detected_hardware({"system_available": 2**34}) == "cpu"
    assert detected_hardware({"system_available": 2**34, "cuda_total": 8 * 2**30, "cuda_reserved": 0}) == "gpu-small"
    assert detected_hardware({"system_available": 2**34, "cuda_total": 80 * 2**30, "cuda_reserved": 0}) == "gpu-large"
