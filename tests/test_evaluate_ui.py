"""The Evaluate tab through the launched app's API (gradio_client, by api_name), and its handlers directly.

The tab must show `studio eval`'s numbers: its table is compared cell by cell with the CLI's scorecard of the
saved run, and that run's answers and scores with a direct `runner.evaluate` of the same variants.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from test_ui_api import studio  # noqa: F401  (the launched app, one per module)

pytestmark = pytest.mark.slow

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

EXAMPLES = [
    {"question": "How long is the warranty?", "reference": "Two years.", "facts": ["two years"]},
    {"question": "How do I reset the device?", "reference": "{\"answer\": \"Hold reset for ten seconds.\"}",
     "facts": ["ten seconds"], "schema": {"type": "object", "required": ["answer"]}},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is water damage covered?"},
                  {"role": "assistant", "content": "No, water damage is not covered."}]},
]
VARIANTS = ["base", "prompt", "rag", "tuned", "tuned+rag"]
GREEDY = {"temperature": 0.0, "max_new_tokens": 4}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("eval-data")
    good = folder / "held-out.jsonl"
    good.write_text("\n".join(json.dumps(e) for e in EXAMPLES) + "\n", encoding="utf-8")
    bad = folder / "broken.jsonl"
    bad.write_text(json.dumps(EXAMPLES[0]) + '\n{"question": "no reference"\n{"question": "Why?"}\n', encoding="utf-8")
    many = folder / "many.jsonl"
    many.write_text("\n".join(json.dumps({"question": f"What is {i} plus {i}?", "reference": str(2 * i)})
                              for i in range(12)) + "\n", encoding="utf-8")
    docs = folder / "docs"
    docs.mkdir()
    (docs / "warranty.txt").write_text("The warranty covers two years of repairs. Water damage is not covered.")
    (docs / "reset.md").write_text("# Reset\n\nHold the reset button for ten seconds to restore factory settings.")
    return {"good": good, "bad": bad, "many": many, "docs": docs}


@pytest.fixture(scope="module")
def loaded(studio: tuple[Any, Any], tiny_model_dir: Path, adapter_dirs: tuple[Path, Path],  # noqa: F811
           files: dict[str, Path]) -> tuple[Any, Any]:
    """The launched studio with the tiny model, adapters style-a and style-b attached, and a knowledge base 'support'."""
    from studio.config import LoadParams

    client, services = studio
    services.runtime.load(LoadParams(model=str(tiny_model_dir), device="cpu"))
    services.runtime.attach_adapter(adapter_dirs[0], "style-a")
    services.runtime.attach_adapter(adapter_dirs[1], "style-b")
    services.rag.create("support")
    *_, report = services.rag.ingest("support", [files["docs"]])
    assert not report.failed
    return client, services


def run_eval(client: Any, path: Path | str, variants: list[str], name: str = "", kb: str | None = "support",
             adapter: str | None = "style-a", extras: list[str] | None = None, limit: int = 0, batch_size: int = 4,
             preset: str = "", **gen: Any) -> tuple[list[tuple], tuple]:
    """Every streamed output of one /evaluate call and the last one; raises AppError when the handler raised gr.Error."""
    job = client.submit(str(path), variants, preset, kb, adapter, extras or [], limit, batch_size, name,
                        **{**GREEDY, **gen}, api_name="/evaluate")
    outputs = list(job)
    result = job.result()
    return outputs, result


def value(output: Any) -> Any:
    """A component's value from an output that may be a gr.update dict."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def scorecard_cells(text: str) -> dict[str, list[str]]:
    """The CLI scorecard as metric -> cells per variant."""
    return {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}


def test_without_a_model_it_says_how_to_get_one(studio: tuple[Any, Any], files: dict[str, Path]) -> None:  # noqa: F811
    client, services = studio
    assert services.runtime.state.info is None
    with pytest.raises(AppError, match="No model is loaded.*Models tab"):
        run_eval(client, files["good"], ["base"], kb=None, adapter=None)


def test_the_tab_shows_the_clis_numbers_and_saves_the_run(loaded: tuple[Any, Any], files: dict[str, Path]) -> None:
    from studio.cli_eval import build_variants, scorecard
    from studio.config import GenerationParams
    from studio.core.evaluation import store
    from studio.core.evaluation.data import load_examples
    from studio.core.evaluation.runner import Variant, evaluate
    from studio.core.prompting import PromptSpec

    client, services = loaded
    outputs, (status, run_name, name_box, verdict, table, plot, example, detail) = run_eval(
        client, files["good"], VARIANTS, name="ui-run", extras=["style-b"])
    assert any("**Evaluating:**" in o[0] and "of 18 answers" in o[0] for o in outputs)  # 3 examples × 6 variants
    assert status.startswith("**Done:** 3 examples × 6 variants") and "saved as `ui-run`" in status
    assert value(run_name) == "ui-run" and name_box == ""
    saved = store.load_run(services.workspace.evals_dir / "ui-run")
    assert [v.name for v in saved.variants] == [*VARIANTS, "style-b"] and len(saved.results) == 3
    assert "ui-run" in store.list_runs(services.workspace)

    # The table is the CLI's scorecard of the same run, cell for cell, plus the 'best' column.
    cli = scorecard_cells(scorecard(saved))
    assert table["headers"] == ["metric", *VARIANTS, "style-b", "best"]
    assert {row[0]: row[1:-1] for row in table["data"]} == cli
    best = {row[0]: row[-1] for row in table["data"]}
    assert best["n"] == "" and best["tokens"] == ""  # descriptive rows name no winner
    rouge = {v: saved.aggregates[v]["rouge_l"] for v in saved.aggregates}
    top = max(rouge.values())
    assert best["rouge_l"] in ("tie", " = ".join(v for v, x in rouge.items() if abs(x - top) < 1e-9))

    # The run itself is what runner.evaluate computes for the same variants (latency aside).
    direct = evaluate(services.models, load_examples(files["good"]),
                      build_variants(VARIANTS, "style-a", "support", PromptSpec()) + [Variant("style-b", adapter="style-b")],
                      GenerationParams(**GREEDY), services.rag, 4)
    for mine, theirs in zip(saved.results, direct.results):
        assert {k: a.answer for k, a in mine.answers.items()} == {k: a.answer for k, a in theirs.answers.items()}
    for variant, values in direct.aggregates.items():
        assert {k: v for k, v in saved.aggregates[variant].items() if k != "latency_s"} == \
               {k: v for k, v in values.items() if k != "latency_s"}

    assert "**ui-run**" in verdict and "3 examples" in verdict and "noise" in verdict  # 3 < 30 examples: the caution
    assert "leads on" in verdict or "Tied" in verdict
    assert plot is not None
    assert value(example) == 0 and "How long is the warranty?" in detail and "tuned+rag" in detail


def test_a_saved_run_reloads_drills_down_and_exports(loaded: tuple[Any, Any], files: dict[str, Path]) -> None:
    from studio.core.evaluation import store
    from studio.ui.evaluate_tab import EvaluateHandlers

    client, services = loaded
    if "ui-run" not in store.list_runs(services.workspace):
        run_eval(client, files["good"], VARIANTS, name="ui-run", extras=["style-b"])
    saved = store.load_run(services.workspace.evals_dir / "ui-run")
    verdict, table, plot, example, detail = client.predict("ui-run", api_name="/evaluate_load_run")
    assert "**ui-run**" in verdict and value(example) == 0 and plot is not None
    assert table["headers"][1:-1] == [*VARIANTS, "style-b"]

    detail = client.predict("ui-run", 1, api_name="/evaluate_example")
    assert "How do I reset the device?" in detail and "ten seconds" in detail and "required: answer" in detail
    for name, answer in saved.results[1].answers.items():
        assert f"<b>{name}</b>" in detail
        assert f"ROUGE-L {answer.scores.rouge_l:.3f}" in detail
    assert "Sources: " in detail  # the RAG variants say which documents they were given
    water = client.predict("ui-run", 2, api_name="/evaluate_example")
    assert "Be brief." in water and "water damage is not covered" in water

    # The run picker offers it when the tab opens.
    updates = EvaluateHandlers(services).show("", None, None, [], None, None)
    assert "ui-run" in updates[4]["choices"] and "style-b" in updates[3]["choices"]

    downloads = client.predict("ui-run", api_name="/evaluate_export")
    by_name = {Path(d if isinstance(d, str) else d["path"]).name: Path(d if isinstance(d, str) else d["path"]) for d in downloads}
    assert set(by_name) == {"ui-run-summary.csv", "ui-run-results.csv", "ui-run.json"}
    assert (services.workspace.exports_dir / "evals" / "ui-run" / "ui-run.json").is_file()
    summary = list(csv.DictReader(by_name["ui-run-summary.csv"].open(encoding="utf-8")))
    assert [r["variant"] for r in summary] == [*VARIANTS, "style-b"]
    for row in summary:
        assert float(row["rouge_l"]) == pytest.approx(saved.aggregates[row["variant"]]["rouge_l"])
        assert row["fact_recall"] != "" and row["schema_valid"] != ""
    results = list(csv.DictReader(by_name["ui-run-results.csv"].open(encoding="utf-8")))
    assert len(results) == 3 * 6 and results[0]["question"] == "How long is the warranty?"
    document = json.loads(by_name["ui-run.json"].read_text(encoding="utf-8"))
    assert document["name"] == "ui-run" and document["aggregates"] == saved.aggregates and len(document["results"]) == 3
    with pytest.raises(AppError, match="no saved evaluation named 'nope'"):
        client.predict("nope", api_name="/evaluate_load_run")


def test_a_bad_file_is_refused_naming_its_lines(loaded: tuple[Any, Any], files: dict[str, Path]) -> None:
    import gradio as gr

    from studio.ui.evaluate_tab import EvaluateHandlers

    client, services = loaded
    path, summary = client.predict(str(files["bad"]), 0, api_name="/evaluate_check_data")
    assert "**Unusable file:**" in summary and "broken.jsonl" in summary and "line 2" in summary and "line 3" in summary
    with pytest.raises(AppError, match=r"broken\.jsonl has 2 unusable line\(s\): line 2.*line 3"):
        run_eval(client, files["bad"], ["base"])
    # The refusal comes before the first output, so the results on the page (the previous run's) stay as they are.
    attempt = EvaluateHandlers(services).evaluate(str(files["bad"]), ["base"], "", None, None, [], 0, 4, "", temperature=0.0,
                                                  top_p=0.95, top_k=50, max_new_tokens=4, repetition_penalty=1.0, seed=0, stop="")
    with pytest.raises(gr.Error, match="line 2"):
        next(attempt)
    path, summary = client.predict(str(files["good"]), 2, api_name="/evaluate_check_data")
    assert summary.startswith("`held-out.jsonl`: **3 examples** · the first **2** will be evaluated")
    assert "2 with facts" in summary and "1 with a JSON schema" in summary and "0 multi-turn" in summary


@pytest.mark.parametrize("variants, kwargs, message", [
    ([], {}, "No variants picked"),
    (["base", "tuned"], {"adapter": None}, "Tuned \\(adapter\\) needs a tuned adapter"),
    (["rag", "tuned+rag"], {"kb": None}, "Base \\+ RAG and Tuned \\+ RAG need a knowledge base"),
    (["base"], {"name": "ui/run"}, "is not usable"),
    (["prompt"], {"preset": "gone"}, "No preset named 'gone'"),
    (["tuned"], {"adapter": "never-attached"}, "uses adapter 'never-attached', which is not attached"),
])
def test_user_errors_say_what_to_fix(loaded: tuple[Any, Any], files: dict[str, Path], variants: list[str],
                                     kwargs: dict[str, Any], message: str) -> None:
    client, _ = loaded
    with pytest.raises(AppError, match=message):
        run_eval(client, files["good"], variants, **kwargs)


def test_a_taken_name_and_a_missing_file_are_refused(loaded: tuple[Any, Any], files: dict[str, Path]) -> None:
    client, _ = loaded
    run_eval(client, files["good"], ["base"], name="taken", limit=1)
    with pytest.raises(AppError, match="An evaluation named 'taken' already exists"):
        run_eval(client, files["good"], ["base"], name="taken")
    with pytest.raises(AppError, match="No held-out set picked"):
        run_eval(client, "", ["base"])
    with pytest.raises(AppError, match="does not exist|cannot be read|not found"):
        run_eval(client, files["good"].with_name("missing.jsonl"), ["base"])


def test_cancel_keeps_and_saves_the_finished_examples(loaded: tuple[Any, Any], files: dict[str, Path]) -> None:
    from studio.core.evaluation import store
    from studio.ui.evaluate_tab import EvaluateHandlers

    _, services = loaded
    on = EvaluateHandlers(services)
    assert on.cancel() == "No evaluation is running."
    gen = dict(temperature=0.0, top_p=0.95, top_k=50, max_new_tokens=24, repetition_penalty=1.0, seed=0, stop="")
    outputs = []
    for output in on.evaluate(str(files["many"]), ["base"], "", None, None, [], 0, 1, "cut-short", **gen):
        outputs.append(output)
        if "answers (" in output[0] and len(outputs) == 2:  # the first finished batch: cancel now
            assert on.cancel().startswith("**Cancelling…**")
    status, run_name = outputs[-1][:2]
    assert status.startswith("**Cancelled:** the ") and "(of 12) are scored" in status and "saved as `cut-short`" in status
    saved = store.load_run(services.workspace.evals_dir / "cut-short")
    assert saved.cancelled and 1 <= len(saved.results) < 12
    assert [r.example.line for r in saved.results] == list(range(1, len(saved.results) + 1))
    assert value(run_name) == "cut-short"
    assert "**cancelled** (partial)" in outputs[-1][3]


def test_the_forgetting_probe_flags_a_regression(loaded: tuple[Any, Any], tiny_model_dir: Path,
                                                 adapter_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from studio.config import LoadParams
    from studio.core.evaluation.probe import load_probe

    from test_browser import teach

    client, services = loaded
    first = load_probe()[0]
    taught = teach(tiny_model_dir, tmp_path / "knows-paris", first.messages, first.reference)
    services.runtime.load(LoadParams(model=str(taught), device="cpu"))
    services.runtime.attach_adapter(adapter_dirs[0], "style-a")
    with pytest.raises(AppError, match="No adapter picked for the probe"):
        client.predict("", 0.1, 8, api_name="/evaluate_probe")
    status, table = client.predict("style-a", 0.01, 8, temperature=0.0, max_new_tokens=48, api_name="/evaluate_probe")
    assert status.startswith("**Regression:** `style-a` scores lower than the base on fact_recall")
    assert "Facts lost on" in status and first.question in status
    rows = {row[0]: row for row in table["data"]}
    assert rows["fact_recall"][-1] == "REGRESSION" and float(rows["fact_recall"][1]) > float(rows["fact_recall"][2])


def test_the_prompt_variant_uses_the_picked_playground_preset(loaded: tuple[Any, Any], files: dict[str, Path]) -> None:
    from studio.core.evaluation import store
    from studio.ui.evaluate_tab import EvaluateHandlers

    client, services = loaded
    services.workspace.save_preset("terse", {"prompt": {"technique": "Free chat", "system": "Answer in five words."}})
    assert EvaluateHandlers(services).show("", None, None, [], None, None)[0]["choices"][1:] == ["terse"]
    run_eval(client, files["good"], ["base", "prompt"], name="with-preset", limit=1, preset="terse")
    saved = store.load_run(services.workspace.evals_dir / "with-preset")
    assert saved.variants[0].prompt is None and saved.variants[1].prompt.system == "Answer in five words."
