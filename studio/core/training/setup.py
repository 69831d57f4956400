"""Setting a run up: its data checked and tokenised, the base model loaded for the method, peft, TrainingArguments.

Precision: QLoRA loads the base in 4-bit NF4 with double quantisation; LoRA and prompt tuning load
it in bf16 on a GPU that supports bf16; full fine-tuning keeps fp32 master weights and trains with
bf16 autocast there. On CPU (and MPS) everything computes in fp32: no bf16 there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from studio.core.training.params import RunConfig
from studio.storage.runs import RunDir
from studio.errors import StudioError

log = logging.getLogger("studio.training")


class DatasetFailure(StudioError):
    """The training or validation file has lines that are not valid examples."""


@dataclass
class PreparedData:
    train: list[dict[str, list[int]]]
    validation: list[dict[str, list[int]]]
    max_length: int
    hashes: dict[str, str] = field(default_factory=dict)
    samples: list[Any] = field(default_factory=list)  # SamplePrompts of the first validation examples (live samples)


def prepare_data(config: RunConfig, tokenizer: Any) -> PreparedData:
    """Check, split and tokenise the data; DatasetFailure (naming the first bad lines) when a file has errors."""
    from studio.core.datasets import check_dataset, make_split, tokenize_dataset
    from studio.core.training.card import file_sha256
    from studio.core.training.samples import sample_prompts

    params = config.data_params()
    report = _checked(check_dataset(config.dataset, tokenizer, params))
    validation = _checked(check_dataset(config.validation, tokenizer, params)) if config.validation else None
    suggested = report.stats.tokens.suggested_max_length if report.stats and report.stats.tokens else None
    params = config.data_params(suggested)
    split = make_split(report, params, validation)
    train, issues = tokenize_dataset(split.train, tokenizer, params)
    held, _ = tokenize_dataset(split.validation, tokenizer, params)
    for issue in issues:
        log.warning("%s", issue)
    if not train:
        raise StudioError(f"No training example is left in {config.dataset} after tokenisation (max_length "
                          f"{params.max_length}).", "raise max_length, or check the dataset's warnings.")
    hashes = {config.dataset: file_sha256(config.dataset)}
    if config.validation:
        hashes[config.validation] = file_sha256(config.validation)
    log.info("data: %d training and %d validation examples, max_length %d (%s)", len(train), len(held),
             params.max_length, split.source)
    return PreparedData([t.features() for t in train], [t.features() for t in held], params.max_length, hashes,
                        sample_prompts([e.messages for e in split.validation]))


def _checked(report: Any) -> Any:
    if report.has_errors:
        first = "; ".join(str(issue) for issue in report.errors[:3])
        more = f" (and {len(report.errors) - 3} more)" if len(report.errors) > 3 else ""
        raise DatasetFailure(f"{report.path.name} has {len(report.errors)} invalid line(s): {first}{more}",
                             f"fix or remove these lines in {report.path} (`studio data check {report.path}` lists them all), "
                             "then start the run again.")
    return report


def device_setup() -> tuple[str, bool]:
    """(device, bf16): bf16 only on a CUDA GPU that supports it; CPU and MPS compute in fp32."""
    import torch

    from studio.core.models import pick_device

    device = pick_device("auto")
    return device, device == "cuda" and torch.cuda.is_bf16_supported()


def load_model(config: RunConfig, path_or_id: str, device: str, bf16: bool) -> Any:
    """The base model for `config.train.method`: 4-bit NF4 (double quant) for QLoRA, bf16 for LoRA/prompt tuning on
    a bf16 GPU, fp32 otherwise (full fine-tuning keeps fp32 master weights and trains with bf16 autocast)."""
    import torch

    from studio.core import hub

    method = config.train.method
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code, "low_cpu_mem_usage": True}
    compute = torch.bfloat16 if bf16 else torch.float32
    if method == "qlora":
        kwargs.update(quantization_config=_four_bit(compute), device_map={"": 0 if device == "cuda" else device},
                      dtype=compute)
    else:
        kwargs["dtype"] = compute if method != "full" else torch.float32
    model = hub.load_causal_lm(path_or_id, **kwargs)
    model.config.use_cache = False  # the KV cache only helps generation, and conflicts with gradient checkpointing
    return model


def _four_bit(compute: Any) -> Any:
    try:
        import bitsandbytes  # noqa: F401  (lazy: only QLoRA needs it)
        from transformers import BitsAndBytesConfig
    except Exception as err:  # noqa: BLE001  (ImportError, or a RuntimeError from a broken CUDA setup)
        raise StudioError(f"QLoRA needs bitsandbytes, which failed to import ({err}).",
                          "pip install bitsandbytes, or choose the lora method.") from None
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def peft_config(config: RunConfig) -> Any:
    """The peft config of an adapter method (None for full fine-tuning)."""
    from peft import LoraConfig, PromptTuningConfig, TaskType

    p = config.train
    if p.method == "prompt_tuning":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=p.num_virtual_tokens)
    if p.method in ("lora", "qlora"):
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                          target_modules=p.target_modules, use_rslora=p.use_rslora, use_dora=p.use_dora, bias="none")
    return None


def wrap_model(model: Any, config: RunConfig) -> Any:
    """The model Trainer trains: the peft model for adapter methods, the model itself for full fine-tuning."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    p = config.train
    if p.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
    elif p.gradient_checkpointing and p.uses_adapter:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need an input that requires grad
    peft = peft_config(config)
    if peft is None:
        return model
    model = get_peft_model(model, peft)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("trainable parameters: %s of %s (%.3f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    return model


def training_arguments(run: RunDir, config: RunConfig, device: str, bf16: bool, has_validation: bool) -> Any:
    from transformers import TrainingArguments

    p = config.train
    evaluate = "no" if not has_validation else ("steps" if p.eval_steps else "epoch")
    return TrainingArguments(
        output_dir=str(run.checkpoints_dir), num_train_epochs=p.epochs, max_steps=p.max_steps or -1,
        per_device_train_batch_size=p.per_device_batch_size, per_device_eval_batch_size=p.per_device_batch_size,
        gradient_accumulation_steps=p.gradient_accumulation, learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler, warmup_steps=float(p.warmup_ratio),  # a float below 1 is a ratio of the steps
        logging_steps=p.logging_steps, logging_first_step=True,
        eval_strategy=evaluate, eval_steps=p.eval_steps or None,
        save_strategy="steps" if p.save_steps else "epoch", save_steps=p.save_steps or 500,
        save_total_limit=p.checkpoints_kept, seed=p.seed, data_seed=p.seed,
        bf16=bf16, fp16=device == "cuda" and not bf16, use_cpu=device == "cpu",
        activation_checkpointing=p.gradient_checkpointing and p.method == "full",
        train_sampling_strategy="group_by_length" if p.group_by_length else "random",
        include_num_input_tokens_seen="non_padding", remove_unused_columns=False, optim="adamw_torch",
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, log_level="warning")
