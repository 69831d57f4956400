"""Before launching a run: how many parameters it trains, and roughly how much memory it needs.

Parameter counts come from the real architecture: the model and its peft wrapper are built on
PyTorch's meta device (shapes only, no weights, no memory), so they match what training reports.

Memory is a rule of thumb, meant to tell "fits" from "clearly does not", not to the last GiB:

- base weights: 0.5 bytes/param in 4-bit (QLoRA), 1 in 8-bit, 2 in bf16/fp16, 4 in fp32. (bitsandbytes
  keeps the embeddings and the output layer in 16-bit, so for very small models 4-bit is optimistic.)
- every trained parameter: 16 bytes with AdamW = fp32 weight 4 + gradient 4 + two moment estimates 8.
  Full fine-tuning trains all of them (the worker keeps fp32 master weights), so ~16 bytes/param.
- activations: batch × seq × hidden × layers × ACTIVATION_BYTES. ACTIVATION_BYTES = 34 in 16-bit
  compute, from Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models", eq. 1: 34·s·b·h bytes per layer, leaving out the attention-score term that fused
  attention never materialises); twice that (68) in fp32 compute (CPU). With gradient checkpointing
  only each layer's input is kept: 2 bytes (16-bit) or 4 (fp32) per batch × seq × hidden × layers.
- logits: batch × seq × vocab × 4 bytes × 2 (fp32 logits and their gradient), when vocab is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.core.training.params import RunConfig

GIB = 2**30
WEIGHT_BYTES = {"4bit": 0.5, "8bit": 1.0, "bf16": 2.0, "fp16": 2.0, "fp32": 4.0}
TRAINED_BYTES = {"weights": 4, "gradients": 4, "optimizer": 8}  # per trained parameter, AdamW: 16 in all
ACTIVATION_BYTES = 34  # per batch × seq × hidden × layer, 16-bit compute (Korthikanti et al. 2022)
CHECKPOINTED_BYTES = 2  # per batch × seq × hidden × layer with gradient checkpointing, 16-bit compute
LOGIT_BYTES = 8  # per batch × seq × vocab: fp32 logits + their gradient


@dataclass
class ParamCount:
    trainable: int
    total: int  # base + trainable (a LoRA adapter adds to the base; full fine-tuning trains the base itself)

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def text(self) -> str:
        return f"{self.trainable:,} trainable of {self.total:,} parameters ({self.fraction:.3%})"


@dataclass
class MemoryEstimate:
    """Bytes, by what holds them."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    def text(self) -> str:
        parts = ", ".join(f"{name} {getattr(self, name) / GIB:.2f}"
                          for name in ("weights", "gradients", "optimizer", "activations"))
        return f"~{self.total / GIB:.2f} GiB ({parts} GiB)"


def estimate_memory(total_params: int, trainable_params: int, method: str, weight_precision: str, batch_size: int,
                    seq_len: int, hidden_size: int, layers: int, vocab_size: int = 0, compute_precision: str = "bf16",
                    gradient_checkpointing: bool = False) -> MemoryEstimate:
    """Training memory in bytes (see the module docstring for every constant).

    `total_params` counts the base plus the trainable parameters; for `method` "full" every parameter trains
    (`weight_precision` is then ignored: the worker keeps fp32 master weights). For adapter methods the base
    (`total_params - trainable_params`) is stored at `weight_precision` (4bit for QLoRA).
    """
    if method == "full":
        trained, base = total_params, 0
    else:
        trained, base = trainable_params, total_params - trainable_params
    weights = base * WEIGHT_BYTES[weight_precision] + trained * TRAINED_BYTES["weights"]
    scale = 2 if compute_precision == "fp32" else 1
    per_unit = (CHECKPOINTED_BYTES if gradient_checkpointing else ACTIVATION_BYTES) * scale
    activations = batch_size * seq_len * (hidden_size * layers * per_unit + vocab_size * LOGIT_BYTES)
    return MemoryEstimate(weights=weights, gradients=trained * TRAINED_BYTES["gradients"],
                          optimizer=trained * TRAINED_BYTES["optimizer"], activations=float(activations))


def count_parameters(config: RunConfig, model_config: Any = None) -> ParamCount:
    """Trainable and total parameters of `config`'s method on its model, built on the meta device (no weights read).

    Raises ModelLoadError when the model cannot be resolved (hub.resolve's messages)."""
    import torch

    from studio.core import hub
    from studio.core.training.setup import peft_config

    model_config = model_config or _model_config(config)
    model = hub.build_on_meta(model_config, trust_remote_code=config.trust_remote_code)
    with torch.device("meta"):
        peft = peft_config(config)
        if peft is None:
            total = sum(p.numel() for p in model.parameters())
            return ParamCount(trainable=total, total=total)
        from peft import get_peft_model

        trainable, total = get_peft_model(model, peft).get_nb_trainable_parameters()
    return ParamCount(trainable=int(trainable), total=int(total))


def estimate_run(config: RunConfig, device: str = "auto", seq_len: int | None = None) -> tuple[ParamCount, MemoryEstimate]:
    """Parameter count and memory estimate of `config` on `device` (auto = the device training would use).

    seq_len defaults to the run's max_length (or DataParams.max_length): a worst case, since batches are padded
    only to their longest example."""
    import torch

    from studio.core.models import pick_device

    model_config = _model_config(config)
    counts = count_parameters(config, model_config)
    device = pick_device(device)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    compute = "bf16" if bf16 else ("fp16" if device == "cuda" else "fp32")
    weights = "4bit" if config.train.method == "qlora" else compute
    text = getattr(model_config, "text_config", None) or model_config
    p = config.train
    memory = estimate_memory(counts.total, counts.trainable, p.method, weights, p.per_device_batch_size,
                             seq_len or p.max_length or config.data.max_length, int(text.hidden_size),
                             int(text.num_hidden_layers), int(getattr(text, "vocab_size", 0) or 0), compute,
                             p.gradient_checkpointing)
    return counts, memory


def _model_config(config: RunConfig) -> Any:
    from studio.core import hub

    return hub.resolve(config.model, trust_remote_code=config.trust_remote_code).config


def linear_module_names(model: str, trust_remote_code: bool = False) -> list[str]:
    """The short names of `model`'s linear layers that LoRA can target (q_proj, v_proj, ...), lm_head excluded.

    Read from the architecture built on the meta device (no weights read). ModelLoadError when it cannot resolve."""
    import torch

    from studio.core import hub

    built = hub.build_on_meta(hub.resolve(model, trust_remote_code=trust_remote_code).config, trust_remote_code)
    output = built.get_output_embeddings()
    names = {name.rsplit(".", 1)[-1] for name, module in built.named_modules()
             if isinstance(module, torch.nn.Linear) and module is not output}
    return sorted(names)
