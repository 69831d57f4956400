"""Peft adapter folders: read their config and check, before anything touches the model, that they fit a base.

A LoRA adapter only works on the base it was trained on. The checks here read the adapter's
config and the tensor shapes in its safetensors header (not the weights), so a wrong adapter is
refused with a message that names the layer that does not fit, and the base stays untouched.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from studio.errors import AdapterError


def check_fits(config: dict[str, Any], path: Path, base: Any) -> None:
    """Raise AdapterError when the adapter at `path` (with `config`) was trained on another base."""
    _check_fingerprint(config, path, base)
    check_shapes(config, path, base)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def read_config(path: Path) -> dict[str, Any]:
    """The adapter's adapter_config.json; AdapterError when the folder or the file is missing or unreadable."""
    cfg = path / "adapter_config.json"
    if not path.is_dir():
        raise AdapterError(f"Adapter folder {path} does not exist.", "pick an adapter from the list or give an existing folder.")
    if not cfg.is_file():
        raise AdapterError(f"{path} is not a peft adapter: it has no adapter_config.json.",
                           "point to the folder a training run saved (runs/<run>/adapter) or that save_pretrained wrote.")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except ValueError as err:
        raise AdapterError(f"{cfg} is not valid JSON ({err}).", "re-save the adapter.") from None


def _check_fingerprint(config: dict[str, Any], path: Path, base: Any) -> None:
    """Refuse an adapter whose recorded base architecture differs from the resident base."""
    recorded = config.get("studio_base") or {}
    if not recorded:
        studio_meta = path / "studio_base.json"
        if studio_meta.is_file():
            with contextlib.suppress(ValueError):
                recorded = json.loads(studio_meta.read_text(encoding="utf-8"))
    current = base_fingerprint(base)
    diffs = [f"{k} {recorded[k]} vs {current[k]}" for k in current if k in recorded and recorded[k] != current[k]]
    if diffs:
        raise AdapterError(
            f"Adapter {path} was trained on another base ({recorded.get('name', '?')}): " + "; ".join(diffs) + ".",
            f"load the base it was trained on ({recorded.get('name') or config.get('base_model_name_or_path')}) first.")


def check_shapes(config: dict[str, Any], path: Path, base: Any) -> None:
    """Refuse an adapter whose LoRA matrices do not fit the base's layers, before touching the base.

    Reads only the shapes in the safetensors header; adapters saved in another format are left to
    peft (whose failure is caught and cleaned up in `attach_adapter`).
    """
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        return
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {key: fh.get_slice(key).get_shape() for key in fh.keys()}
    except Exception as err:  # noqa: BLE001  (a damaged file)
        raise AdapterError(f"{weights} cannot be read: {first_line(err)}", "re-save or re-train the adapter.") from None
    for key, shape in shapes.items():
        problem = _lora_shape_problem(key, shape, base)
        if problem:
            raise AdapterError(
                f"Adapter {path} was trained on another base and does not fit the loaded model: {problem}.",
                "load the base model it was trained on "
                f"({config.get('base_model_name_or_path') or 'see its adapter_config.json'}) first.")


def _lora_shape_problem(key: str, shape: list[int], base: Any) -> str | None:
    """Why the LoRA tensor `key` (shape `shape`) cannot sit on `base`, or None when it can."""
    for part, dim, attr in ((".lora_A.", 1, "in_features"), (".lora_B.", 0, "out_features")):
        if part not in key or len(shape) != 2:
            continue
        module_name = key.split(part)[0].removeprefix("base_model.model.")
        try:
            module = base.get_submodule(module_name)
        except AttributeError:
            return f"it adapts a layer {module_name} that this model does not have"
        expected = getattr(module, attr, None)
        if expected is not None and expected != shape[dim]:
            return f"{module_name} has {attr}={expected} here but {shape[dim]} in the adapter"
    return None


def base_fingerprint(model: Any) -> dict[str, Any]:
    """Architecture facts an adapter depends on; saved next to adapters the studio trains."""
    cfg = model.config
    return {
        "model_type": getattr(cfg, "model_type", None),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "num_hidden_layers": getattr(cfg, "num_hidden_layers", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
    }
