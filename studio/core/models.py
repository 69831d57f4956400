"""ModelManager: the single owner of model memory.

Exactly one base model is resident. LoRA adapters attach to it through peft's multi-adapter
support, and each request picks one (or none) under the manager's lock, so the base weights are
never reloaded or copied. A failed load leaves the previously loaded model usable.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from studio.config import LoadParams
from studio.core import adapter_files, hub
from studio.core.adapter_files import base_fingerprint  # noqa: F401  (re-exported: training saves it)
from studio.errors import AdapterError, GenerationError, ModelLoadError

Progress = Callable[[float, str], None]


@dataclass
class ModelInfo:
    """What the Models panel and `studio chat` report about the resident model."""

    name: str
    source: str  # "local folder" or "hub"
    parameters: int
    precision: str
    device: str
    memory_bytes: int
    adapters: list[str] = field(default_factory=list)
    has_chat_template: bool = True
    trust_remote_code: bool = False

    def summary(self) -> str:
        gib = self.memory_bytes / 2**30
        adapters = ", ".join(self.adapters) or "none"
        return (f"{self.name} · {self.parameters / 1e6:,.1f}M params · {self.precision} on {self.device} · "
                f"{gib:,.2f} GiB · adapters: {adapters}")


@dataclass
class Loaded:
    """The resident model and what it was loaded with."""

    params: LoadParams
    model: Any  # a transformers PreTrainedModel, or a peft PeftModel wrapping it once an adapter is attached
    tokenizer: Any
    precision: str
    device: str
    adapters: dict[str, Path] = field(default_factory=dict)

    @property
    def base(self) -> Any:
        return self.model.get_base_model() if self.adapters else self.model


def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError("CUDA was requested but no CUDA device is visible.", "choose device auto or cpu.")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise ModelLoadError("MPS was requested but Apple's Metal backend is not available.", "choose device auto or cpu.")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_precision(requested: str, device: str) -> str:
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "mps":
        return "fp16"
    return "fp32"


def count_parameters(model: Any) -> int:
    """Parameters of the model as trained; bitsandbytes 4-bit packs two values per stored byte."""
    total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
    return total


def _quantization_config(precision: str, double_quant: bool, device: str) -> Any:
    if precision not in ("8bit", "4bit"):
        return None
    try:
        import bitsandbytes  # noqa: F401  (lazy: only quantised loads need it)
        from transformers import BitsAndBytesConfig
    except ImportError as err:
        raise ModelLoadError(f"{precision} loading needs bitsandbytes, which failed to import ({err}).",
                             "pip install bitsandbytes, or choose fp32/bf16 precision.") from None
    if precision == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=compute)


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(err).lower()


class ModelManager:
    """Loads, holds and serves one base model plus any number of attached LoRA adapters. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded: Loaded | None = None

    # Loading ------------------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def load(self, params: LoadParams, progress: Progress | None = None) -> ModelInfo:
        """Load `params.model`, replacing the resident model; raises ModelLoadError with the fix.

        Everything that can be checked cheaply (the id or folder, its config, its tokenizer, the
        device and precision) is checked first, without the lock, so the resident model keeps
        answering meanwhile (asking the hub can take seconds). If the weights then fail to load,
        the previous model is loaded again so the studio keeps working, and the error says so.
        """
        report = progress or (lambda _f, _m: None)
        report(0.05, f"Resolving {params.model}")
        source = hub.resolve(params.model, trust_remote_code=params.trust_remote_code)
        report(0.15, "Loading tokenizer")
        tokenizer = hub.load_tokenizer(source, trust_remote_code=params.trust_remote_code)
        device = pick_device(params.device)
        precision = pick_precision(params.precision, device)
        if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
            raise ModelLoadError("This GPU does not support bf16.", "choose fp16 or 4bit precision.")
        _quantization_config(precision, params.double_quant, device)  # bitsandbytes missing: fail now
        with self._lock:
            previous = (self._loaded.params, dict(self._loaded.adapters)) if self._loaded else None
            self._unload_locked()
            report(0.3, f"Loading weights ({precision} on {device})")
            failure: ModelLoadError | None = None
            try:
                model = self._load_weights(source, precision, params, device)
            except Exception as err:  # noqa: BLE001  (translated into a user-facing error)
                failure = _load_failure(err, params.model, precision, device)
            if failure is not None:
                # Restored outside the except block: the original traceback (and the half-built
                # model its frames hold) is gone by now, so its memory is free for the old model.
                raise _with_restore_note(failure, previous, self._restore(previous))
            model.eval()
            self._loaded = Loaded(params=params, model=model, tokenizer=tokenizer, precision=precision, device=device)
            report(1.0, "Loaded")
            return self.info()

    def _load_weights(self, source: hub.ModelSource, precision: str, params: LoadParams, device: str) -> Any:
        kwargs: dict[str, Any] = {"trust_remote_code": params.trust_remote_code, "low_cpu_mem_usage": True}
        quant = _quantization_config(precision, params.double_quant, device)
        if quant is not None:
            kwargs["quantization_config"] = quant
            kwargs["device_map"] = {"": device if device != "cuda" else 0}
            if device == "cpu":
                kwargs["dtype"] = torch.float32
        else:
            kwargs["dtype"] = _DTYPES[precision]
        model = hub.load_causal_lm(source.path_or_id, **kwargs)
        if quant is None:
            model.to(device)
        return model

    def _restore(self, previous: tuple[LoadParams, dict[str, Path]] | None) -> bool:
        """Reload the model (and adapters) that a failed load replaced; True when it is back."""
        if previous is None:
            return False
        params, adapters = previous
        gc.collect()
        try:
            source = hub.resolve(params.model, trust_remote_code=params.trust_remote_code)
            tokenizer = hub.load_tokenizer(source, trust_remote_code=params.trust_remote_code)
            device = pick_device(params.device)
            precision = pick_precision(params.precision, device)
            model = self._load_weights(source, precision, params, device)
            model.eval()
            self._loaded = Loaded(params=params, model=model, tokenizer=tokenizer, precision=precision, device=device)
        except Exception:  # noqa: BLE001  (the original error is the one the user needs to see)
            self._loaded = None
            return False
        for name, path in adapters.items():
            with contextlib.suppress(Exception):  # it fitted a moment ago; if it no longer loads, serve without it
                self.attach_adapter(path, name)
        return True

    def unload(self) -> None:
        """Drop the resident model and its adapters and give their memory back."""
        with self._lock:
            self._unload_locked()

    def _unload_locked(self) -> None:
        if self._loaded is None:
            return
        self._loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # Adapters ------------------------------------------------------------------------------
    def attach_adapter(self, path: str | Path, name: str | None = None) -> ModelInfo:
        """Attach a peft adapter folder to the resident base under `name` (default: folder name)."""
        from peft import PeftModel

        path = Path(path).expanduser()
        name = name or path.name
        with self._lock:
            loaded = self._require_loaded()
            if name in loaded.adapters:
                raise AdapterError(f"An adapter named {name!r} is already attached.", "detach it first or choose another name.")
            config = adapter_files.read_config(path)
            adapter_files.check_fits(config, path, loaded.base)
            try:
                if loaded.adapters:
                    loaded.model.load_adapter(str(path), adapter_name=name)
                else:
                    loaded.model = PeftModel.from_pretrained(loaded.model, str(path), adapter_name=name)
                loaded.model.eval()
            except Exception as err:  # noqa: BLE001  (peft raises many kinds; all mean "does not fit")
                _undo_partial_attach(loaded, name)
                raise AdapterError(
                    f"Adapter {path} does not fit the loaded base {loaded.params.model}: {_first_line(err)}",
                    "attach an adapter trained on this base model, or load the base it was trained on "
                    f"({config.get('base_model_name_or_path') or 'see its adapter_config.json'}).") from None
            loaded.adapters[name] = path
            return self.info()

    def detach_adapter(self, name: str) -> ModelInfo:
        with self._lock:
            loaded = self._require_loaded()
            if name not in loaded.adapters:
                raise AdapterError(f"No adapter named {name!r} is attached.", "pick one of: " + (", ".join(loaded.adapters) or "none attached"))
            del loaded.adapters[name]
            if loaded.adapters:
                loaded.model.delete_adapter(name)
                loaded.model.set_adapter(next(iter(loaded.adapters)))
            else:
                # Removes the LoRA layers and gives back the untouched base model.
                loaded.model = loaded.model.unload()
            gc.collect()
            return self.info()

    def adapters(self) -> list[str]:
        with self._lock:
            return list(self._loaded.adapters) if self._loaded else []

    @contextlib.contextmanager
    def use(self, adapter: str | None = None) -> Iterator[tuple[Any, Any]]:
        """Hold the model for one request with `adapter` active (None = the plain base).

        Yields (model, tokenizer). The lock is held for the whole block, so requests that want
        different adapters take turns on the one shared base.
        """
        with self._lock:
            loaded = self._loaded
            if loaded is None:
                raise GenerationError("No model is loaded.", "load one in the Models tab (or pass --model).")
            if adapter and adapter not in loaded.adapters:
                raise GenerationError(f"Adapter {adapter!r} is not attached.",
                                      "attach it in the Models tab, or pick one of: " + (", ".join(loaded.adapters) or "none attached"))
            if not loaded.adapters:
                yield loaded.model, loaded.tokenizer
            elif adapter:
                loaded.model.set_adapter(adapter)
                yield loaded.model, loaded.tokenizer
            else:
                with loaded.model.disable_adapter():
                    yield loaded.model, loaded.tokenizer

    @property
    def tokenizer(self) -> Any:
        return self._require_loaded().tokenizer

    # Reporting ------------------------------------------------------------------------------
    def info(self) -> ModelInfo | None:
        with self._lock:
            loaded = self._loaded
            if loaded is None:
                return None
            return ModelInfo(
                name=loaded.params.model,
                source="local folder" if Path(loaded.params.model).expanduser().is_dir() else "hub",
                parameters=count_parameters(loaded.base),
                precision=loaded.precision,
                device=loaded.device,
                memory_bytes=model_memory_bytes(loaded.model),
                adapters=list(loaded.adapters),
                has_chat_template=bool(getattr(loaded.tokenizer, "chat_template", None)),
                trust_remote_code=loaded.params.trust_remote_code,
            )

    def _require_loaded(self) -> Loaded:
        if self._loaded is None:
            raise AdapterError("No model is loaded.", "load a base model first in the Models tab.")
        return self._loaded


def model_memory_bytes(model: Any) -> int:
    """Bytes held by the model's parameters and buffers (adapters included)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def device_memory() -> dict[str, int]:
    """Memory in use right now: process RSS, and CUDA allocated/reserved/total when present."""
    out = {"process_rss": psutil.Process().memory_info().rss, "system_available": psutil.virtual_memory().available}
    if torch.cuda.is_available():
        out["cuda_allocated"] = torch.cuda.memory_allocated()
        out["cuda_reserved"] = torch.cuda.memory_reserved()
        out["cuda_total"] = torch.cuda.get_device_properties(0).total_memory
    return out


def _load_failure(err: Exception, model: str, precision: str, device: str) -> ModelLoadError:
    """The user-facing error for an exception raised while the weights were loading."""
    if isinstance(err, ModelLoadError):
        return ModelLoadError(err.message, err.fix)  # a fresh one: no traceback into the failed load
    if _is_oom(err):
        return ModelLoadError(f"Out of memory while loading {model} in {precision} on {device}.",
                              "choose 4bit precision, a smaller model, or free memory (unload other programs).")
    return ModelLoadError(f"Loading {model} failed: {type(err).__name__}: {_first_line(err)}",
                          "check the model files, or try another precision.")


def _with_restore_note(err: ModelLoadError, previous: tuple[LoadParams, dict[str, Path]] | None,
                       restored: bool) -> ModelLoadError:
    if previous is not None:
        name = previous[0].model
        err.message += (f" The previous model ({name}) is still loaded." if restored else
                        f" The previous model ({name}) could not be reloaded either: no model is loaded now.")
        err.args = (f"{err.message} Fix: {err.fix}" if err.fix else err.message,)
    return err


def _undo_partial_attach(loaded: Loaded, name: str) -> None:
    """Remove whatever a failed attach left behind, so the base serves as before."""
    model = loaded.model
    if not loaded.adapters:
        # PeftModel.from_pretrained injects the LoRA layers into the base before it loads their
        # weights; when the load fails, the wrapper is gone but the layers are still in the base.
        _strip_tuner_layers(model)
        if hasattr(model, "get_base_model"):  # the wrapper was made after all: serve the plain base
            loaded.model = model.get_base_model()
    elif name in getattr(model, "peft_config", {}):
        model.delete_adapter(name)
        model.set_adapter(next(iter(loaded.adapters)))


def _strip_tuner_layers(model: Any) -> None:
    """Put every peft layer's original base layer back in place (what PeftModel.unload() does)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    tuners = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in tuners:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if getattr(parent, child, None) is module:
            setattr(parent, child, module.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
