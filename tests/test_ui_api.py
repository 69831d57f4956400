"""The real web app, launched on a free port and driven through gradio_client by api_name."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(client, services) of a launched studio with an empty workspace and no model loaded."""
    from studio.app import launch
    from studio.config import Settings
    from studio.services import Services

    services = Services.build(Settings(workspace=tmp_path_factory.mktemp("studio-home"), port=free_port()))
    app = launch(services, prevent_thread_lock=True)
    client = gradio_client.Client(f"http://127.0.0.1:{services.settings.port}/", verbose=False)
    yield client, services
    client.close()
    app.close()


@pytest.fixture
def client(studio: tuple[Any, Any], tiny_model_dir: Path) -> Any:
    """The studio's client with tiny_model_dir loaded (loaded once, kept across tests)."""
    client, services = studio
    info = services.runtime.state.info
    if info is None or info.name != str(tiny_model_dir):
        client.predict(str(tiny_model_dir), api_name="/load_model")
    return client


def chat(client: Any, message: str, **kwargs: Any) -> list[tuple]:
    """Every streamed output of one /chat call (chatbot, cleared textbox, stats line)."""
    job = client.submit(message=message, **{"temperature": 0.0, "max_new_tokens": 12, **kwargs}, api_name="/chat")
    outputs = list(job)
    job.result()  # raises AppError when the handler raised gr.Error
    return outputs


def answer(outputs: list[tuple]) -> str:
    history = outputs[-1][0]
    assert history[-1]["role"] == "assistant"
    return "".join(part["text"] for part in history[-1]["content"])


def test_no_model_chat_says_how_to_get_one(studio: tuple[Any, Any]) -> None:
    client, services = studio
    if services.runtime.state.info is not None:
        client.predict(api_name="/unload_model")
    job = client.submit(message="hello", api_name="/chat")
    with pytest.raises(AppError, match="No model is loaded"):
        job.result()
    history, textbox, _ = job.outputs()[-1]
    assert history == [] and textbox == "hello"  # the message is given back to send again
    view, note = client.predict(message="hello", api_name="/render_prompt")
    assert "[user]\nhello" in view and "No model loaded" in note


def test_load_model_reports_it_and_remembers_it(studio: tuple[Any, Any], tiny_model_dir: Path) -> None:
    client, services = studio
    status, _, _ = client.predict(str(tiny_model_dir), api_name="/load_model")
    assert "Loaded" in status and str(tiny_model_dir) in status and "local folder" in status
    assert services.workspace.recent_models()[0] == str(tiny_model_dir)


def test_render_prompt_shows_the_templated_text_and_token_count(client: Any) -> None:
    view, note = client.predict(message="hello", api_name="/render_prompt")
    assert view.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    assert "tokens" in note and "the model's own chat template" in note
    view, _ = client.predict(message="meh", technique="Few-shot", instruction="Sentiment?",
                             examples=_table([["good", "positive"]]), api_name="/render_prompt")
    assert "Sentiment?\n\ngood<|im_end|>\n<|im_start|>assistant\npositive" in view


def test_render_prompt_reports_an_invalid_spec_in_place(client: Any) -> None:
    view, note = client.predict(message="x", technique="Few-shot", instruction="Sentiment?",
                                examples=_table([["good", "positive"], ["bad", ""]]), api_name="/render_prompt")
    assert view == "" and "Few-shot example 2 has an input but no output" in note


def test_chat_streams_an_answer_and_stats(client: Any) -> None:
    outputs = chat(client, "hello there")
    assert len(outputs) > 2, "expected the answer to arrive in several streamed updates"
    history, textbox, stats = outputs[-1]
    assert history[0]["role"] == "user" and textbox == ""
    assert answer(outputs)
    assert "tokens" in stats and "tok/s" in stats and "finished:" in stats


def test_chat_continues_a_conversation(client: Any) -> None:
    first = chat(client, "hello")[-1][0]
    second = chat(client, "and again", history=first)
    assert [m["role"] for m in second[-1][0]] == ["user", "assistant", "user", "assistant"]


def test_cancelling_a_chat_frees_the_model_for_the_next_one(client: Any) -> None:
    job = client.submit(message="tell me everything", temperature=0.0, max_new_tokens=2000, api_name="/chat")
    deadline = time.monotonic() + 60
    while len(job.outputs()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.cancel()
    started = time.monotonic()
    assert answer(chat(client, "next"))
    assert time.monotonic() - started < 8, "the cancelled generation kept the model busy"


def test_adapter_changes_the_answer_and_detaches(client: Any, adapter_dirs: tuple[Path, Path]) -> None:
    base = answer(chat(client, "hello"))
    status, attached, _ = client.predict(str(adapter_dirs[0]), "", api_name="/attach_adapter")
    assert "style-a" in status and value(attached) == "style-a"
    outputs = chat(client, "hello", adapter="style-a")
    assert answer(outputs) != base
    assert "adapter `style-a`" in outputs[-1][2]
    assert answer(chat(client, "hello")) == base  # no adapter = the plain base, still
    status, _ = client.predict("style-a", api_name="/detach_adapter")
    assert "| Adapters | none |" in status
    with pytest.raises(AppError, match="Adapter 'style-a' is not attached"):
        chat(client, "hello", adapter="style-a")


def test_presets_round_trip(client: Any) -> None:
    saved = client.predict(name="sentiment few-shot", technique="Few-shot", instruction="Sentiment?",
                           examples=_table([["good", "positive"], ["bad", "negative"]]), temperature=0.3, seed=7,
                           stop="END\nSTOP", api_name="/save_preset")
    assert value(saved) == "sentiment few-shot"
    values = [value(v) for v in client.predict("sentiment few-shot", api_name="/load_preset")]
    system, technique, instruction, examples, trigger, template, temperature, top_p, top_k, max_new, rep, seed, stop = values
    assert (technique, instruction, temperature, seed, stop) == ("Few-shot", "Sentiment?", 0.3, 7, "END\nSTOP")
    assert examples["data"] == [["good", "positive"], ["bad", "negative"]]
    client.predict("sentiment few-shot", api_name="/delete_preset")
    with pytest.raises(AppError, match="No preset named 'sentiment few-shot'"):
        client.predict("sentiment few-shot", api_name="/load_preset")
    with pytest.raises(AppError, match="Preset name '../evil' is not usable"):
        client.predict(name="../evil", api_name="/save_preset")


def test_export_conversation_writes_valid_jsonl(studio: tuple[Any, Any], client: Any) -> None:
    history = chat(client, "hello")[-1][0]
    path, note = client.predict(history=history, system="Be kind.", api_name="/export_conversation")
    written = Path(note.split("`")[1])
    assert written.parent == studio[1].workspace.exports_dir and written.suffix == ".jsonl"
    record = json.loads(Path(value(path)).read_text(encoding="utf-8"))
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["messages"][0]["content"] == "Be kind." and record["messages"][1]["content"] == "hello"
    with pytest.raises(AppError, match="no answered message"):
        client.predict(history=[], api_name="/export_conversation")


def test_user_errors_in_chat_inputs_are_specific(client: Any) -> None:
    with pytest.raises(AppError, match="There is nothing to send"):
        chat(client, "   ")
    with pytest.raises(AppError, match="Few-shot example 1 has an input but no output"):
        chat(client, "x", technique="Few-shot", instruction="Sentiment?", examples=_table([["good", ""]]))
    with pytest.raises(AppError, match="has no {input}"):
        chat(client, "x", technique="Zero-shot", instruction="Sentiment?", template="{instruction}")


@pytest.mark.parametrize("case", ["unknown hub id", "folder without a model", "adapter for another base"])
def test_load_and_attach_errors_are_specific_and_the_model_keeps_working(
        case: str, studio: tuple[Any, Any], client: Any, tmp_path: Path, foreign_adapter_dir: Path,
        tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if case == "unknown hub id":
        call, expected = ("no-such-org/no-such-model",), "not in the local Hugging Face cache and offline mode is on"
    elif case == "folder without a model":
        (tmp_path / "notes.txt").write_text("not a model")
        call, expected = (str(tmp_path),), "is a folder but not a model: it has no config.json"
    else:
        call, expected = (str(foreign_adapter_dir), ""), "was trained on another base"
    api = "/attach_adapter" if case.startswith("adapter") else "/load_model"
    with pytest.raises(AppError) as err:
        client.predict(*call, api_name=api)
    assert expected in str(err.value)
    state = studio[1].runtime.state
    assert state.info.name == str(tiny_model_dir) and state.info.adapters == []
    if api == "/load_model":
        assert expected in state.error  # the Models tab's status panel shows it too
    assert answer(chat(client, "still there?"))


def value(output: Any) -> Any:
    """An output's value, whether the handler returned it plainly or as gr.update(value=...)."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def _table(rows: list[list[str]]) -> dict[str, Any]:
    return {"headers": ["input", "output"], "data": rows, "metadata": None}
