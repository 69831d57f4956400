"""Adapters on disk: list them, merge one into its base as a standalone model, delete one.

Two places hold adapters: the workspace's adapters/ folder (anything a user saved or dropped there) and
runs/<run>/adapter (what a training run saved, with a README.md model card). torch, transformers and peft
are imported inside the functions that need them, so listing and deleting stay light enough for the UI.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from studio.core.adapter_files import first_line, read_config
from studio.errors import AdapterError, ConfigError, ModelLoadError, StudioError
from studio.storage.runs import RunDir
from studio.storage.workspace import Workspace

Progress = Callable[[float, str], None]
Source = Literal["workspace", "run"]
Dtype = Literal["auto", "fp32", "bf16", "fp16"]

# Prompt-learning adapters add virtual tokens in front of the input; there is no weight to fold them into.
UNMERGEABLE = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING", "ADAPTION_PROMPT", "CPT")
# Merged and unmerged forward passes agree up to rounding; bf16/fp16 round each weight after the merge.
TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 2e-2}
CHECK_TEXT = "The quick brown fox jumps over the lazy dog."


@dataclass
class AdapterInfo:
    """One adapter folder. `problem` is set (and the peft fields are empty) only for folders that are not
    usable adapters, which `list_adapters(..., include_invalid=True)` reports instead of skipping."""

    name: str  # the folder's path under adapters/, or the run's name
    path: Path
    source: Source
    base_model: str | None = None
    peft_type: str | None = None
    r: int | None = None
    target_modules: list[str] = field(default_factory=list)  # layer names (q_proj...), or [the regex] peft was given
    size_bytes: int = 0
    created: float = 0.0  # seconds since the epoch: when adapter_config.json was written
    method: str | None = None  # runs only: lora, qlora, prompt_tuning...
    run_state: str | None = None  # runs only: finished, stopped, failed...
    metrics: dict[str, Any] = field(default_factory=dict)  # runs only: step, loss, eval_loss
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


# Listing -------------------------------------------------------------------------------------------------
def list_adapters(workspace: Workspace, include_invalid: bool = False) -> list[AdapterInfo]:
    """Every peft adapter under adapters/ (at any depth) and runs/*/adapter: workspace ones by name, then runs.

    A folder directly under adapters/ (or a runs/*/adapter) without a readable adapter_config.json is
    skipped, or, with `include_invalid`, listed with `problem` saying why, so a user can see why it is
    not offered. Missing or damaged run files (status.json, config.yaml, metrics.jsonl) only leave the
    run fields empty.
    """
    found: list[AdapterInfo] = []
    folders = {p.parent for p in workspace.adapters_dir.rglob("adapter_config.json")}
    if include_invalid:
        # A folder that only groups adapters (adapters/team/a, adapters/team/b) is not a broken one.
        folders |= {p for p in workspace.adapters_dir.iterdir()
                    if p.is_dir() and not p.name.startswith(".") and not any(f.is_relative_to(p) for f in folders)}
    for path in sorted(folders):
        name = path.relative_to(workspace.adapters_dir).as_posix()
        found.append(_describe(AdapterInfo(name=name, path=path, source="workspace")))
    for run_path in sorted(p for p in workspace.runs_dir.iterdir() if p.is_dir()):
        run = RunDir(run_path)
        if run.adapter_dir.is_dir():
            found.append(_with_run_facts(_describe(AdapterInfo(name=run.name, path=run.adapter_dir, source="run")), run))
    return [a for a in found if include_invalid or a.problem is None]


def _describe(info: AdapterInfo) -> AdapterInfo:
    try:
        config = read_config(info.path)
    except AdapterError as err:
        info.problem = err.message
        return info
    info.base_model = config.get("base_model_name_or_path") or _studio_base_name(info.path)
    info.peft_type = str(config.get("peft_type") or "") or None
    info.r = config.get("r") if isinstance(config.get("r"), int) else None
    targets = config.get("target_modules")
    # peft may store "all-linear" resolved to every full module path; the layer kinds are what a reader wants.
    info.target_modules = [targets] if isinstance(targets, str) else sorted({str(t).rsplit(".", 1)[-1] for t in targets or []})
    info.size_bytes = sum(p.stat().st_size for p in info.path.rglob("*") if p.is_file())
    info.created = (info.path / "adapter_config.json").stat().st_mtime
    return info


def _studio_base_name(path: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return json.loads((path / "studio_base.json").read_text(encoding="utf-8")).get("name")
    return None


def _with_run_facts(info: AdapterInfo, run: RunDir) -> AdapterInfo:
    """The run's method (config.yaml), state and final metrics (status.json, else metrics.jsonl)."""
    import yaml

    with contextlib.suppress(OSError, ValueError, AttributeError, yaml.YAMLError):
        info.method = (yaml.safe_load(run.config_file.read_text(encoding="utf-8")).get("train") or {}).get("method")
    if run.status_file.is_file():
        status = run.read_status()
        info.run_state = status.state
        final = status.extra.get("final") if isinstance(status.extra, dict) else None
        if isinstance(final, dict):
            info.metrics = final
    rows = run.read_metrics() if not info.metrics else []
    if rows:
        from studio.core.training.card import final_metrics

        info.metrics = final_metrics(rows)
    return info


def find_adapter(workspace: Workspace, name_or_path: str | Path) -> AdapterInfo:
    """The adapter named `name_or_path` in list_adapters (a run's name, or a folder under adapters/), or at
    that path; AdapterError naming the choices when there is none, or when the name is ambiguous."""
    adapters = list_adapters(workspace)
    matches = [a for a in adapters if a.name == str(name_or_path)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AdapterError(f"{name_or_path!r} names both " + " and ".join(str(a.path) for a in matches) + ".",
                           "give the adapter's folder instead of its name.")
    path = Path(name_or_path).expanduser()  # names first: a folder of that name in the current folder is a path only
    if path.is_dir():
        path = path.resolve()
        if path.name == "adapter" and path.parent.parent == workspace.runs_dir:
            return _with_run_facts(_describe(AdapterInfo(name=path.parent.name, path=path, source="run")), RunDir(path.parent))
        return _describe(AdapterInfo(name=path.name, path=path, source="workspace"))
    choices = ", ".join(a.name for a in adapters) or "none in this workspace"
    raise AdapterError(f"No adapter named {name_or_path!r} and no such folder.", f"pick one of: {choices}.")


# Deleting ------------------------------------------------------------------------------------------------
def delete_adapter(workspace: Workspace, path: str | Path) -> Path:
    """Delete an adapter folder inside adapters/ or a run's runs/<run>/adapter (the run itself stays);
    returns the deleted folder. Anything else, a missing folder included, is refused with StudioError."""
    target = Path(path).expanduser().resolve()  # symlinks resolved: a link out of the workspace is refused
    in_adapters = target.is_relative_to(workspace.adapters_dir) and target != workspace.adapters_dir
    in_run = target.name == "adapter" and target.parent.parent == workspace.runs_dir
    if not (in_adapters or in_run):
        raise StudioError(f"{target} is not an adapter folder of the workspace {workspace.root}.",
                          f"only folders inside {workspace.adapters_dir} or a run's adapter/ folder can be deleted here.")
    if not target.is_dir():
        raise StudioError(f"There is no adapter folder {target}.", "refresh the adapter list and pick one that exists.")
    shutil.rmtree(target)
    return target


# Merging -------------------------------------------------------------------------------------------------
def default_export_dir(workspace: Workspace, adapter_name: str) -> Path:
    """models/<adapter-name>-merged: where the model picker finds local models."""
    return workspace.models_dir / f"{adapter_name.replace('/', '-')}-merged"


def merge_and_export(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None, dtype: Dtype = "auto",
                     progress: Progress | None = None) -> Path:
    """Fold the adapter into its base and save a standalone model folder at `out_dir`; returns `out_dir`.

    The base (`base_model`, else the adapter's base_model_name_or_path) is loaded on its own, not
    through the ModelManager, at full precision: fp32 on CPU, bf16 on a CUDA GPU that supports it
    ("auto"), never 4-bit, not even for a QLoRA adapter, because merging into quantised weights rounds
    the adapter's small update away. So it needs memory for the whole base at that precision. The folder
    holds the weights, the tokenizer (with its chat template) and a README.md naming the base and adapter.
    Before it is put in place, the saved model is reloaded with AutoModelForCausalLM and its logits on a
    short input must match base+adapter. Everything is written to a temporary folder beside `out_dir`
    and renamed at the end, so a failure leaves nothing behind.

    Raises StudioError (AdapterError/ModelLoadError/ConfigError) when the folder is not a peft adapter,
    `out_dir` exists and is not empty, `dtype` is unknown, the adapter is prompt/prefix tuning (nothing
    to merge: use it as an adapter), the base cannot be loaded, is stored quantised, or does not fit the
    adapter, or the check fails.
    """
    report = progress or (lambda _f, _m: None)
    adapter_dir, out_dir = Path(adapter_dir).expanduser().resolve(), Path(out_dir).expanduser().resolve()
    config = read_config(adapter_dir)
    base_name = _check_merge_request(config, adapter_dir, out_dir, base_model, dtype)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        precision, input_ids, expected = _merge_in(tmp, adapter_dir, config, base_name, dtype, report)
        report(0.8, "Checking that the saved model loads and matches base + adapter")
        _verify(tmp, precision, input_ids, expected)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); a directory is renamed only over an empty one
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(1.0, f"Saved {out_dir}")
    return out_dir


def _check_merge_request(config: dict[str, Any], adapter_dir: Path, out_dir: Path, base_model: str | None,
                         dtype: str) -> str:
    """The base to load; refuses what cannot be merged before anything is loaded."""
    if dtype != "auto" and dtype not in TOLERANCE:
        raise ConfigError(f"dtype {dtype!r} cannot be merged in: it is not one of auto, fp32, bf16, fp16.",
                          "choose auto (fp32 on CPU, bf16 on a GPU that supports it), or one of those.")
    peft_type = str(config.get("peft_type") or "").upper()
    if peft_type in UNMERGEABLE:
        raise AdapterError(f"{adapter_dir} is a {peft_type} adapter: it adds learned virtual tokens to the input, "
                           "which cannot be merged into the model's weights.",
                           "use it as an adapter instead (attach it in the Models tab, or `studio chat --adapter`).")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StudioError(f"{out_dir} already exists and is not empty.", "choose a new output folder, or delete that one first.")
    base = base_model or config.get("base_model_name_or_path") or _studio_base_name(adapter_dir)
    if not base:
        raise ModelLoadError(f"{adapter_dir}/adapter_config.json does not say which base model it was trained on.",
                             "give the base model (--base, a hub id or a local folder).")
    return str(base)


def _merge_in(tmp: Path, adapter_dir: Path, config: dict[str, Any], base_name: str, dtype: Dtype,
              report: Progress) -> tuple[str, Any, Any]:
    """Load base + adapter, merge, save into `tmp`; (precision, check input ids, base+adapter logits on them)."""
    import torch
    from peft import PeftModel

    from studio.core.adapter_files import check_fits

    report(0.05, f"Loading {base_name}")
    base, tokenizer, device, precision = _load_base(base_name, dtype)
    check_fits(config, adapter_dir, base)
    report(0.35, f"Applying {adapter_dir.name}")
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    except Exception as err:  # noqa: BLE001  (peft raises many kinds; all mean "does not fit")
        raise AdapterError(f"Adapter {adapter_dir} does not fit {base_name}: {first_line(err)}",
                           "give the base it was trained on (--base).") from None
    inputs = tokenizer(CHECK_TEXT, return_tensors="pt").to(device)
    with torch.no_grad():
        expected = model(**inputs).logits.float().cpu()
    report(0.5, "Merging the adapter into the weights")
    try:
        merged = model.merge_and_unload()
    except Exception as err:  # noqa: BLE001
        raise AdapterError(f"{config.get('peft_type')} adapter {adapter_dir} cannot be merged: {first_line(err)}",
                           "use it as an adapter instead (attach it in the Models tab).") from None
    report(0.6, "Saving the merged model")
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "README.md").write_text(_readme(base_name, adapter_dir, config, precision), encoding="utf-8")
    del model, merged, base  # the check reloads from disk: free this copy first
    gc.collect()
    return precision, inputs["input_ids"].cpu(), expected


def _load_base(base_name: str, dtype: Dtype) -> tuple[Any, Any, str, str]:
    """(model, tokenizer, device, precision) of the base at full precision; ModelLoadError when it cannot load."""
    import torch

    from studio.core import hub

    source = hub.resolve(base_name)
    if getattr(source.config, "quantization_config", None):
        raise ModelLoadError(f"{base_name} is stored quantised; merging into quantised weights loses the adapter's update.",
                             "give the original full-precision base with --base.")
    tokenizer = hub.load_tokenizer(source)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = _precision(dtype, device)
    try:
        model = hub.load_causal_lm(source.path_or_id, dtype=_torch_dtype(precision), low_cpu_mem_usage=True)
    except Exception as err:  # noqa: BLE001  (OS, format and memory errors all mean "cannot load the base")
        raise ModelLoadError(f"Loading the base {base_name} failed: {type(err).__name__}: {first_line(err)}",
                             "check the model files, or give another base with --base.") from None
    return model.to(device).eval(), tokenizer, device, precision


def _precision(dtype: Dtype, device: str) -> str:
    import torch

    if dtype == "auto":
        return "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return dtype


def _torch_dtype(precision: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _verify(folder: Path, precision: str, input_ids: Any, expected: Any) -> None:
    """Reload the saved folder as a plain model and compare its logits with the ones base+adapter gave."""
    import torch

    from studio.core import hub

    try:
        model = hub.load_causal_lm(folder, dtype=_torch_dtype(precision), low_cpu_mem_usage=True)
    except Exception as err:  # noqa: BLE001
        raise StudioError(f"The merged model does not load back: {type(err).__name__}: {first_line(err)}",
                          "nothing was written; report this with the adapter's adapter_config.json.") from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.no_grad():
        got = model.to(device)(input_ids=input_ids.to(device)).logits.float().cpu()
    del model
    scale = max(1.0, expected.abs().max().item())
    diff = (got - expected).abs().max().item()
    if diff > TOLERANCE[precision] * scale:
        raise StudioError(f"The merged model's outputs differ from base + adapter (max logit difference {diff:.4g}).",
                          "nothing was written; try --dtype fp32, or use the adapter unmerged.")


def _readme(base_name: str, adapter_dir: Path, config: dict[str, Any], precision: str) -> str:
    targets = config.get("target_modules")
    targets = ", ".join(sorted(targets)) if isinstance(targets, list) else targets
    return f"""---
base_model: {base_name}
tags: [llm-adaptation-studio, merged-adapter]
---

# {adapter_dir.name} (merged)

A standalone model: the {config.get('peft_type', 'peft')} adapter **{adapter_dir}** merged into **{base_name}**
by LLM Adaptation Studio on {time.strftime('%Y-%m-%d %H:%M:%S')}, in {precision}.

| adapter setting | value |
|---|---|
| peft type | {config.get('peft_type')} |
| r | {config.get('r')} |
| lora_alpha | {config.get('lora_alpha')} |
| target modules | {targets} |

Load it like any model, no peft needed:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
```
"""
