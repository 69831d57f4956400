"""Find a model (local folder, hub cache, or the hub) and check it is a causal LM before loading it.

Every failure is a ModelLoadError that names the model and the fix. Nothing here holds the
weights, so the checks run while the previously loaded model is still resident.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import ModelLoadError

HUB_TIMEOUT_S = 10.0

# transformers builds a model under torch.set_default_dtype(its dtype) and puts back the dtype it found.
# That default is process-wide, so two threads building at once (a Gradio event loading the Playground's
# model while another trains, merges or embeds) can each put back the other's dtype and leave the whole
# process in bf16, where every tensor made afterwards is bf16 too. Every real build holds this lock.
_BUILDING = threading.RLock()


@contextmanager
def building() -> Iterator[None]:
    """Hold while a model is built from its weights (load_causal_lm, the embedder), one at a time."""
    with _BUILDING:
        yield


def load_causal_lm(path_or_id: str | Path, **kwargs: Any) -> Any:
    """AutoModelForCausalLM.from_pretrained(path_or_id, **kwargs), one build at a time (see `building`).

    Every causal LM the studio loads (Playground, training, merge and export) comes through here; errors pass
    through for the caller to word."""
    from transformers import AutoModelForCausalLM

    with building():
        return AutoModelForCausalLM.from_pretrained(path_or_id, **kwargs)


def build_on_meta(config: Any, trust_remote_code: bool = False) -> Any:
    """`config`'s architecture on the meta device (no memory, no weights) to count or name its layers.

    Built from a copy whose dtype is unset, so transformers leaves torch's process-wide default dtype alone
    (and `config` is not changed): these builds answer UI events and must not wait behind a real load."""
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(config)
    for part in [config, *(getattr(config, key, None) for key in getattr(config, "sub_configs", {}))]:
        if part is not None:
            part.dtype = None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


@dataclass
class ModelSource:
    name: str  # what the user asked for
    path_or_id: str  # what from_pretrained is given
    config: Any
    local: bool


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else with slashes, or starting like a path, is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def resolve(name: str, trust_remote_code: bool = False) -> ModelSource:
    """Locate `name` and load its config; raises ModelLoadError with a fix for every failure."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"{folder} is a folder but not a model: it has no config.json.",
                "pick the folder that holds config.json and the weights (*.safetensors), e.g. one written by save_pretrained.")
        path_or_id, local = str(folder), True
    elif folder.exists():
        raise ModelLoadError(f"{folder} is a file, not a model folder.", "give the folder that holds config.json.")
    elif _looks_like_path(name):
        raise ModelLoadError(f"The folder {folder} does not exist.", "check the path, or give a hub id such as Qwen/Qwen2.5-0.5B-Instruct.")
    else:
        path_or_id, local = _resolve_hub_id(name), False
    config = _load_config(name, path_or_id, trust_remote_code)
    _check_causal_lm(name, config, trust_remote_code)
    return ModelSource(name=name, path_or_id=path_or_id, config=config, local=local)


def _resolve_hub_id(repo_id: str) -> str:
    """Return a cached snapshot folder, or the id itself once the hub has confirmed it exists."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except HFValidationError:
        raise ModelLoadError(
            f"{repo_id!r} is neither an existing folder nor a valid hub id.",
            "give a hub id like org/model-name, or the path of a local model folder.") from None
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass  # not in the cache: ask the hub below
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelLoadError(
            f"{repo_id} is not in the local Hugging Face cache and offline mode is on (HF_HUB_OFFLINE).",
            "download it once with network access, unset HF_HUB_OFFLINE, or pick a local model folder.")
    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise ModelLoadError(f"{repo_id} is a gated model: your account must accept its licence first.",
                             "accept the licence on its hub page, then run `hf auth login`.") from None
    except RepositoryNotFoundError:
        raise ModelLoadError(f"There is no model {repo_id!r} on the Hugging Face Hub (or it is private).",
                             "check the spelling (org/model-name), or log in with `hf auth login` for a private model.") from None
    except Exception as err:  # noqa: BLE001  (connection errors come from several HTTP stacks)
        raise ModelLoadError(
            f"The Hugging Face Hub could not be reached ({type(err).__name__}: {_short(err)}) and {repo_id} is not in the local cache.",
            "connect to the network and retry, point HF_HOME at a cache that has it, or pick a local model folder.") from None
    return repo_id


def _load_config(name: str, path_or_id: str, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    except ValueError as err:
        text = str(err)
        if "trust_remote_code" in text:
            raise ModelLoadError(f"{name} ships its own Python code, which the studio does not run unless you allow it.",
                                 "tick 'trust remote code' (only for models you trust) or pick another model.") from None
        raise ModelLoadError(f"{name} has a config transformers does not understand: {_short(err)}",
                             "upgrade transformers, or pick a model of a supported architecture.") from None
    except OSError as err:
        raise ModelLoadError(f"{name} has no readable config.json: {_short(err)}", "check the model folder or hub id.") from None


def _check_causal_lm(name: str, config: Any, trust_remote_code: bool) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {}):
        return
    kind = getattr(config, "model_type", "unknown")
    fix = "pick a decoder model such as Llama, Qwen, Mistral, Phi or GPT-2 (encoders like BERT cannot generate text)."
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ModelLoadError(f"{name} is a {kind!r} model, not a causal (text-generating) language model.", fix)
    # Encoder families (BERT, RoBERTa...) also have a causal-LM class, so the config type alone lets a
    # plain encoder checkpoint through; the architectures it was saved with tell what it really is.
    architectures = getattr(config, "architectures", None) or []
    generative = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if architectures and not any(a in generative or a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise ModelLoadError(
            f"{name} is a {kind!r} checkpoint saved as {', '.join(architectures)}, "
            "not a causal (text-generating) language model.", fix)


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path_or_id, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001
        raise ModelLoadError(f"{source.name} has no usable tokenizer: {_short(err)}",
                             "make sure the folder holds tokenizer.json or tokenizer_config.json.") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:240] + ("…" if len(text) > 240 else "")
