"""ModelManager: loading (fp32, 4-bit), adapters sharing one base, and every error path.

After each failure the previously loaded model must still answer exactly as before.
"""

from __future__ import annotations

import gc
import shutil
import threading
import weakref
from pathlib import Path

import pytest
import torch

from studio.config import GenerationParams, LoadParams
from studio.core import generation
from studio.core.models import ModelManager, count_parameters, model_memory_bytes
from studio.errors import AdapterError, GenerationError, ModelLoadError

MESSAGES = [{"role": "user", "content": "Hello, how can I reset the router?"}]


def answer(manager: ModelManager, adapter: str | None = None, *, temperature: float = 0.0, seed: int = 0) -> str:
    params = GenerationParams(temperature=temperature, seed=seed, max_new_tokens=12)
    return generation.generate(manager, MESSAGES, params, adapter).text


@pytest.fixture
def manager(tiny_model_dir: Path) -> ModelManager:
    manager = ModelManager()
    manager.load(LoadParams(model=str(tiny_model_dir)))
    return manager


@pytest.fixture
def baseline(manager: ModelManager) -> str:
    """The loaded model's greedy answer before anything else happens."""
    return answer(manager)


def assert_still_serving(manager: ModelManager, model_dir: Path, baseline: str) -> None:
    info = manager.info()
    assert info is not None and info.name == str(model_dir)
    assert answer(manager) == baseline


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(path)
    return path


def base_pointers(model: torch.nn.Module) -> dict[str, int]:
    """data_ptr of every base weight, keyed by its name in the plain model."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return {name.replace(".base_layer", ""): p.data_ptr()
            for name, p in model.named_parameters() if "lora_" not in name}


def has_lora_layers(model: torch.nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.named_modules())


# Loading ---------------------------------------------------------------------------------------
def test_load_fp32(manager: ModelManager, tiny_model_dir: Path, baseline: str) -> None:
    info = manager.info()
    assert (info.precision, info.device, info.source, info.adapters) == ("fp32", "cpu", "local folder", [])
    assert info.has_chat_template
    with manager.use() as (model, _tokenizer):
        assert next(model.parameters()).dtype == torch.float32
        assert info.parameters == sum(p.numel() for p in model.parameters())
        tensors = [*model.parameters(), *model.buffers()]  # buffers: the rotary frequencies
        assert info.memory_bytes == sum(t.numel() * t.element_size() for t in tensors)
    assert baseline and answer(manager) == baseline
    assert "fp32 on cpu" in info.summary()


def test_load_4bit_nf4_on_cpu(tiny_model_dir: Path, manager: ModelManager) -> None:
    import bitsandbytes as bnb

    fp32 = manager.info()
    manager.load(LoadParams(model=str(tiny_model_dir), precision="4bit"))
    info = manager.info()
    assert info.precision == "4bit"
    with manager.use() as (model, _tokenizer):
        quantised = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert len(quantised) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
        assert quantised[0].weight.quant_state.quant_type == "nf4"
        assert count_parameters(model) == info.parameters
    assert info.parameters == fp32.parameters
    assert info.memory_bytes < fp32.memory_bytes
    assert answer(manager)  # it generates


def test_loading_another_model_frees_the_first(manager: ModelManager, other_model_dir: Path) -> None:
    with manager.use() as (model, _tokenizer):
        first = weakref.ref(model)
    del model, _tokenizer
    manager.load(LoadParams(model=str(other_model_dir)))
    gc.collect()
    assert first() is None, "the first model is still referenced after loading another one"
    assert manager.info().name == str(other_model_dir)
    assert answer(manager)


def test_unload(manager: ModelManager) -> None:
    with manager.use() as (model, _tokenizer):
        ref = weakref.ref(model)
    del model, _tokenizer
    manager.unload()
    gc.collect()
    assert ref() is None and manager.info() is None and not manager.is_loaded
    with pytest.raises(GenerationError, match="No model is loaded"):
        answer(manager)


# Adapters -----------------------------------------------------------------------------------
@pytest.fixture
def with_adapters(manager: ModelManager, adapter_dirs: tuple[Path, Path], baseline: str) -> ModelManager:
    for path in adapter_dirs:
        manager.attach_adapter(path)
    return manager


def lora_bytes(adapter_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as fh:
        return sum(fh.get_tensor(k).numel() * 4 for k in fh.keys())


def test_adapters_share_the_base(manager: ModelManager, adapter_dirs: tuple[Path, Path]) -> None:
    with manager.use() as (model, _tokenizer):
        before_ptrs = base_pointers(model)
    before = manager.info().memory_bytes
    for path in adapter_dirs:
        info = manager.attach_adapter(path)
    assert info.adapters == ["style-a", "style-b"]
    with manager.use("style-a") as (model, _tokenizer):
        assert base_pointers(model) == before_ptrs  # not one base weight was copied or moved
    growth = info.memory_bytes - before
    expected = sum(lora_bytes(p) for p in adapter_dirs)
    assert expected * 0.9 <= growth <= expected * 1.1
    assert info.parameters == manager.info().parameters  # parameters count the base only


def test_adapters_switch_per_request(with_adapters: ModelManager, baseline: str) -> None:
    a, b, base = answer(with_adapters, "style-a"), answer(with_adapters, "style-b"), answer(with_adapters, None)
    assert len({a, b, base}) == 3, "each adapter (and the plain base) should answer differently"
    assert base == baseline  # use(None) disables every adapter
    # Switching back and forth leaks nothing from one request into the next.
    assert [answer(with_adapters, n) for n in ("style-b", None, "style-a", "style-b")] == [b, base, a, b]


def test_detach_restores_the_plain_base(with_adapters: ModelManager, baseline: str) -> None:
    b = answer(with_adapters, "style-b")
    with with_adapters.use() as (model, _tokenizer):
        ptrs = base_pointers(model)
    info = with_adapters.detach_adapter("style-a")
    assert info.adapters == ["style-b"]
    assert answer(with_adapters, "style-b") == b
    with pytest.raises(GenerationError, match="'style-a' is not attached"):
        answer(with_adapters, "style-a")
    info = with_adapters.detach_adapter("style-b")
    assert info.adapters == [] and with_adapters.adapters() == []
    with with_adapters.use() as (model, _tokenizer):
        assert not hasattr(model, "peft_config") and not has_lora_layers(model)
        assert base_pointers(model) == ptrs
    assert answer(with_adapters) == baseline


def test_adapter_name_and_reattach(manager: ModelManager, adapter_dirs: tuple[Path, Path], baseline: str) -> None:
    manager.attach_adapter(adapter_dirs[0], name="mine")
    mine = answer(manager, "mine")
    with pytest.raises(AdapterError, match="'mine' is already attached"):
        manager.attach_adapter(adapter_dirs[1], name="mine")
    assert answer(manager, "mine") == mine
    manager.detach_adapter("mine")
    manager.attach_adapter(adapter_dirs[0], name="mine")
    assert answer(manager, "mine") == mine
    assert answer(manager) == baseline


def test_concurrent_requests_with_different_adapters(with_adapters: ModelManager) -> None:
    names = ["style-a", "style-b", None]
    expected = {n: answer(with_adapters, n, temperature=1.0, seed=7) for n in names}
    results: dict[str | None, list[str]] = {n: [] for n in names}
    errors: list[BaseException] = []

    def work(name: str | None) -> None:
        try:
            for _ in range(3):
                results[name].append(answer(with_adapters, name, temperature=1.0, seed=7))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert results == {n: [expected[n]] * 3 for n in names}


# Adapter errors ---------------------------------------------------------------------------------
def test_adapter_from_another_base(manager: ModelManager, foreign_adapter_dir: Path, tiny_model_dir: Path,
                                   baseline: str) -> None:
    with pytest.raises(AdapterError) as info:
        manager.attach_adapter(foreign_adapter_dir)
    message = str(info.value)
    assert "another base" in message and "does not fit" in message
    assert "in_features=" in message  # says which layer and how it differs
    assert manager.adapters() == []
    with manager.use() as (model, _tokenizer):
        assert not has_lora_layers(model)
    assert_still_serving(manager, tiny_model_dir, baseline)


@pytest.mark.parametrize("already_attached", [False, True])
def test_failed_attach_leaves_nothing_behind(manager: ModelManager, foreign_adapter_dir: Path, tiny_model_dir: Path,
                                             adapter_dirs: tuple[Path, Path], baseline: str, already_attached: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when peft itself fails halfway (the shape pre-check bypassed), the base is left clean."""
    monkeypatch.setattr("studio.core.adapter_files.check_shapes", lambda *args: None)
    if already_attached:
        manager.attach_adapter(adapter_dirs[0])
        a = answer(manager, "style-a")
    with pytest.raises(AdapterError, match="does not fit the loaded base"):
        manager.attach_adapter(foreign_adapter_dir)
    if already_attached:
        assert manager.adapters() == ["style-a"]
        assert answer(manager, "style-a") == a
    else:
        with manager.use() as (model, _tokenizer):
            assert not has_lora_layers(model) and not hasattr(model, "peft_config")
    assert_still_serving(manager, tiny_model_dir, baseline)


def test_adapter_folder_errors(manager: ModelManager, tmp_path: Path, tiny_model_dir: Path, baseline: str) -> None:
    (tmp_path / "not-an-adapter").mkdir()
    with pytest.raises(AdapterError, match="is not a peft adapter: it has no adapter_config.json") as info:
        manager.attach_adapter(tmp_path / "not-an-adapter")
    assert "runs/<run>/adapter" in str(info.value)
    with pytest.raises(AdapterError, match="does not exist"):
        manager.attach_adapter(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{oops")
    with pytest.raises(AdapterError, match="is not valid JSON"):
        manager.attach_adapter(broken)
    with pytest.raises(AdapterError, match="No adapter named 'ghost'"):
        manager.detach_adapter("ghost")
    with pytest.raises(GenerationError, match="'ghost' is not attached"):
        answer(manager, "ghost")
    assert_still_serving(manager, tiny_model_dir, baseline)


def test_adapter_without_a_model(adapter_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(AdapterError, match="No model is loaded"):
        ModelManager().attach_adapter(adapter_dirs[0])


# Load errors: the previous model keeps working ---------------------------------------------------
def _hub_error(cls: type) -> Exception:
    try:
        import httpx2 as httpx  # what this huggingface_hub is built on
    except ImportError:
        import httpx
    request = httpx.Request("GET", "https://huggingface.co/api/models/nobody/nothing")
    return cls("404 Client Error", response=httpx.Response(404, request=request))


def test_hub_id_found_in_the_local_cache(manager: ModelManager, tiny_model_dir: Path, baseline: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id resolves to its cached snapshot offline, without asking the hub."""
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(HfApi, "model_info", lambda *a, **k: pytest.fail("the hub was asked"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    info = manager.load(LoadParams(model="tiny-org/tiny-llama"))
    assert (info.name, info.source) == ("tiny-org/tiny-llama", "hub")
    assert answer(manager) == baseline  # the same weights as the folder it was copied from


def test_unknown_hub_id_offline(manager: ModelManager, tiny_model_dir: Path, baseline: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache") as info:
        manager.load(LoadParams(model="nobody-xyz/no-such-model-123"))
    assert "HF_HUB_OFFLINE" in str(info.value)
    assert_still_serving(manager, tiny_model_dir, baseline)


@pytest.mark.parametrize(("error", "words"), [
    ("not-found", ["There is no model 'nobody-xyz/no-such-model-123' on the Hugging Face Hub", "hf auth login"]),
    ("gated", ["gated model", "accept the licence"]),
    ("connection", ["could not be reached", "ConnectionError", "not in the local cache"]),
])
def test_unknown_hub_id_online(manager: ModelManager, tiny_model_dir: Path, baseline: str, error: str,
                               words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    raised = {"not-found": lambda: _hub_error(RepositoryNotFoundError), "gated": lambda: _hub_error(GatedRepoError),
              "connection": lambda: ConnectionError("Failed to resolve 'huggingface.co'")}[error]
    calls: list[str] = []

    def model_info(self: HfApi, repo_id: str, **kwargs: object) -> None:
        calls.append(repo_id)
        raise raised()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "model_info", model_info)
    with pytest.raises(ModelLoadError) as info:
        manager.load(LoadParams(model="nobody-xyz/no-such-model-123"))
    assert calls == ["nobody-xyz/no-such-model-123"]
    for word in words:
        assert word in str(info.value)
    assert_still_serving(manager, tiny_model_dir, baseline)


def test_the_model_answers_while_the_hub_is_asked(manager: ModelManager, tiny_model_dir: Path, baseline: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    asked, release = threading.Event(), threading.Event()

    def slow_model_info(self: HfApi, repo_id: str, **kwargs: object) -> None:
        asked.set()
        release.wait(30)
        raise ConnectionError("timed out")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "model_info", slow_model_info)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            manager.load(LoadParams(model="nobody-xyz/slow-hub"))
        except ModelLoadError as err:
            errors.append(err)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        assert asked.wait(30)
        assert answer(manager) == baseline  # not stuck behind the load
    finally:
        release.set()
        loader.join(30)
    assert len(errors) == 1 and "could not be reached" in str(errors[0])
    assert_still_serving(manager, tiny_model_dir, baseline)


def test_local_path_errors(manager: ModelManager, tiny_model_dir: Path, baseline: str, tmp_path: Path) -> None:
    cases = {
        "not a valid id!": "is neither an existing folder nor a valid hub id",
        str(tmp_path / "missing" / "model"): "does not exist",
        "./relative-missing-folder": "does not exist",
    }
    (tmp_path / "empty-folder").mkdir()
    cases[str(tmp_path / "empty-folder")] = "is a folder but not a model: it has no config.json"
    (tmp_path / "weights.bin").write_bytes(b"\0")
    cases[str(tmp_path / "weights.bin")] = "is a file, not a model folder"
    for name, words in cases.items():
        with pytest.raises(ModelLoadError, match=words) as info:
            manager.load(LoadParams(model=name))
        assert info.value.fix
        assert_still_serving(manager, tiny_model_dir, baseline)


def test_not_a_causal_lm(manager: ModelManager, tiny_model_dir: Path, baseline: str, bert_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="'bert' checkpoint saved as BertModel, not a causal") as info:
        manager.load(LoadParams(model=str(bert_dir)))
    assert "encoders like BERT cannot generate text" in str(info.value)
    assert_still_serving(manager, tiny_model_dir, baseline)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   MemoryError()])
def test_out_of_memory(manager: ModelManager, tiny_model_dir: Path, other_model_dir: Path, baseline: str,
                       adapter_dirs: tuple[Path, Path], error: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    manager.attach_adapter(adapter_dirs[0])
    with_adapter = answer(manager, "style-a")
    real = AutoModelForCausalLM.from_pretrained

    def from_pretrained(path: str, *args: object, **kwargs: object) -> object:
        if Path(path) == other_model_dir:
            raise error
        return real(path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    with pytest.raises(ModelLoadError, match="Out of memory while loading") as info:
        manager.load(LoadParams(model=str(other_model_dir)))
    assert "choose 4bit precision" in str(info.value)
    assert f"The previous model ({tiny_model_dir}) is still loaded" in str(info.value)
    assert_still_serving(manager, tiny_model_dir, baseline)
    assert manager.adapters() == ["style-a"]  # adapters come back with the model
    assert answer(manager, "style-a") == with_adapter


def test_damaged_weights(manager: ModelManager, tiny_model_dir: Path, baseline: str, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_model_dir, damaged)
    (damaged / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelLoadError, match="Loading .*damaged failed") as info:
        manager.load(LoadParams(model=str(damaged)))
    assert "is still loaded" in str(info.value)
    assert_still_serving(manager, tiny_model_dir, baseline)


def test_when_even_the_previous_model_cannot_come_back(manager: ModelManager, other_model_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    def from_pretrained(*args: object, **kwargs: object) -> object:
        raise MemoryError()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    with pytest.raises(ModelLoadError, match="could not be reloaded either: no model is loaded now"):
        manager.load(LoadParams(model=str(other_model_dir)))
    assert not manager.is_loaded and manager.info() is None


def test_first_load_failure_leaves_nothing_loaded(bert_dir: Path) -> None:
    manager = ModelManager()
    with pytest.raises(ModelLoadError, match="not a causal"):
        manager.load(LoadParams(model=str(bert_dir)))
    assert manager.info() is None


def test_model_memory_counts_shared_tensors_once() -> None:
    layer = torch.nn.Linear(4, 4, bias=False)
    model = torch.nn.Sequential(layer, layer)
    assert model_memory_bytes(model) == 16 * 4
