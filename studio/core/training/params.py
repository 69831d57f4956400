"""TrainParams (how to fine-tune) and RunConfig (what to fine-tune on what): one file reproduces a run.

A RunConfig is written as YAML (`RUN.yaml`, and `config.yaml` inside the run folder) and read back
by the worker process, so everything the worker needs is in it and nothing else.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from studio.config import _field_error, check_choice, check_range, param_field
from studio.core.datasets.params import DataParams
from studio.errors import ConfigError

Method = Literal["qlora", "lora", "full", "prompt_tuning"]
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup"]

# QLoRA's usual learning rate is higher: the adapter learns on top of a frozen 4-bit base (QLoRA paper, Table 9).
DEFAULT_LR = {"qlora": 2e-4, "lora": 1e-4, "full": 1e-4, "prompt_tuning": 1e-4}
ADAPTER_METHODS = ("qlora", "lora", "prompt_tuning")


@dataclass
class TrainParams:
    """How a model is fine-tuned. `learning_rate` None = the method's default (2e-4 for QLoRA, else 1e-4)."""

    method: str = param_field("lora", "qlora = LoRA on a 4-bit (NF4) base, least memory; lora = LoRA on a 16/32-bit base; "
                              "full = every weight (most memory); prompt_tuning = learn only a few virtual prompt tokens.")
    lora_r: int = param_field(16, "LoRA rank: size of the low-rank update. Higher = more capacity and memory.",
                              min=1, max=512, step=1)
    lora_alpha: int = param_field(32, "LoRA scaling numerator (update scaled by alpha/r; usually 2×r).", min=1, max=1024, step=1)
    lora_dropout: float = param_field(0.05, "Dropout on the LoRA input during training.", min=0.0, max=0.5, step=0.01)
    target_modules: Any = param_field("all-linear", "Layers that get LoRA: all-linear, or a list of module names "
                                      "(e.g. q_proj, v_proj).")
    use_rslora: bool = param_field(False, "Rank-stabilised LoRA: scale by alpha/sqrt(r), which keeps high ranks stable.")
    use_dora: bool = param_field(False, "DoRA: learn magnitude and direction apart (a little better, slower).")
    epochs: int = param_field(2, "Passes over the training data. 1-3 is usually enough; more overfits small data.",
                              min=1, max=20, step=1)
    max_steps: int = param_field(0, "Stop after this many optimizer steps (0 = run the epochs).", min=0, max=1_000_000, step=1)
    learning_rate: float | None = param_field(None, "Peak learning rate (empty = 2e-4 for QLoRA, 1e-4 otherwise).",
                                              min=1e-7, max=1e-2, step=1e-5)
    lr_scheduler: str = param_field("cosine", "How the learning rate decays after warm-up.")
    warmup_ratio: float = param_field(0.03, "Share of the steps spent ramping the learning rate up from 0.",
                                      min=0.0, max=0.5, step=0.01)
    per_device_batch_size: int = param_field(4, "Examples per forward pass. Lower it when memory runs out.", min=1, max=256, step=1)
    gradient_accumulation: int = param_field(4, "Forward passes per optimizer step: effective batch = batch size × this.",
                                             min=1, max=256, step=1)
    max_length: int | None = param_field(None, "Longest example in tokens (empty = the dataset's suggested length, "
                                         "its 95th percentile).", min=16, max=131072, step=16)
    seed: int = param_field(42, "Random seed of initialisation and shuffling: same seed, same run.", min=0, max=2**31 - 1, step=1)
    logging_steps: int = param_field(5, "Write a metrics line every this many steps.", min=1, max=10_000, step=1)
    eval_steps: int = param_field(0, "Evaluate on the validation set every this many steps (0 = once per epoch).",
                                  min=0, max=100_000, step=1)
    save_steps: int = param_field(0, "Save a resumable checkpoint every this many steps (0 = once per epoch).",
                                  min=0, max=100_000, step=1)
    checkpoints_kept: int = param_field(2, "Newest checkpoints kept on disk (older ones are deleted).", min=1, max=100, step=1)
    group_by_length: bool = param_field(True, "Batch examples of similar length together: less padding, faster steps.")
    train_on_prompt: bool = param_field(False, "Off = the loss covers only the assistant replies (recommended); "
                                        "on = every token.")
    num_virtual_tokens: int = param_field(20, "Prompt tuning only: learned tokens put before every input.",
                                          min=1, max=512, step=1)
    sample_max_new_tokens: int = param_field(64, "Live samples: at each evaluation the model answers up to 3 validation "
                                             "prompts with at most this many new tokens (0 = off).",
                                             min=0, max=2048, step=8)
    gradient_checkpointing: bool = param_field(False, "Recompute activations in the backward pass: far less memory, "
                                               "about 30% slower.")

    def __post_init__(self) -> None:
        check_choice(self, "method", get_args(Method))
        check_choice(self, "lr_scheduler", get_args(Scheduler))
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LR[self.method]
        names: tuple[str, ...] = () if self.max_length is None else ("max_length",)
        if self.max_length is not None and float(self.max_length) != int(self.max_length):
            raise _field_error("max_length", f"`max_length` should be a whole number, got {self.max_length!r}.",
                               "set max_length to an integer.")
        for name in ("lora_r", "lora_alpha", "lora_dropout", "epochs", "max_steps", "learning_rate", "warmup_ratio",
                     "per_device_batch_size", "gradient_accumulation", "seed", "logging_steps", "eval_steps",
                     "save_steps", "checkpoints_kept", "num_virtual_tokens", "sample_max_new_tokens", *names):
            check_range(TrainParams, self, name)
        for name in ("lora_r", "lora_alpha", "epochs", "max_steps", "per_device_batch_size", "gradient_accumulation", "seed",
                     "logging_steps", "eval_steps", "save_steps", "checkpoints_kept", "num_virtual_tokens", "sample_max_new_tokens",
                     *names):
            setattr(self, name, int(getattr(self, name)))
        self.learning_rate, self.lora_dropout, self.warmup_ratio = (float(self.learning_rate), float(self.lora_dropout),
                                                                    float(self.warmup_ratio))
        self.target_modules = _target_modules(self.target_modules)
        for name in ("use_rslora", "use_dora", "group_by_length", "train_on_prompt", "gradient_checkpointing"):
            setattr(self, name, bool(getattr(self, name)))

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation

    @property
    def uses_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainParams:
        return cls(**_known(cls, data, "train"))


def _target_modules(value: Any) -> str | list[str]:
    if isinstance(value, str):
        names = [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
        if len(names) == 1:
            return names[0]
        value = names
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    raise _field_error("target_modules", f"`target_modules` should be all-linear or a list of module names, got {value!r}.",
                       "use all-linear, or names such as q_proj, k_proj, v_proj, o_proj.")


def _known(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"`{where}` should be a mapping of name: value, got {data!r}.", f"fix the {where} section.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Unknown {where} setting(s): {', '.join(unknown)}.", f"use only: {', '.join(sorted(known))}.")
    return dict(data)


@dataclass
class RunConfig:
    """Everything that defines a training run: base model, data, and parameters. Written to RUN.yaml."""

    model: str = param_field("", "Base model: a hub id (org/name) or a local model folder.")
    dataset: str = param_field("", "Training data: a .jsonl/.json chat dataset.")
    validation: str | None = param_field(None, "Optional validation file; empty = hold out val_ratio of the training data.")
    val_ratio: float = param_field(0.1, "Share of the training data held out for validation when no validation file is given.",
                                   min=0.0, max=0.5, step=0.01)
    name: str = param_field("", "Run name: the folder under runs/ (empty = model name and time).")
    train: TrainParams = dataclasses.field(default_factory=TrainParams)
    data: DataParams = dataclasses.field(default_factory=DataParams)
    trust_remote_code: bool = param_field(False, "Run Python code shipped with the model. Only for models you trust.")

    def __post_init__(self) -> None:
        self.model = str(self.model or "").strip()
        self.dataset = str(self.dataset or "").strip()
        self.validation = str(self.validation).strip() or None if self.validation else None
        self.name = str(self.name or "").strip()
        if not self.model:
            raise _field_error("model", "`model` is empty: no base model to fine-tune.",
                               "give a hub id such as Qwen/Qwen2.5-0.5B-Instruct or a local model folder.")
        if not self.dataset:
            raise _field_error("dataset", "`dataset` is empty: no training data.", "give a .jsonl or .json chat dataset.")
        check_range(RunConfig, self, "val_ratio")
        if isinstance(self.train, dict):
            self.train = TrainParams.from_dict(self.train)
        if isinstance(self.data, dict):
            self.data = DataParams.from_dict(_known(DataParams, self.data, "data"))

    def data_params(self, max_length: int | None = None) -> DataParams:
        """The DataParams tokenisation uses: val_ratio, seed and train_on_prompt of this run, and `max_length`
        (TrainParams.max_length when set, else the one given, else DataParams')."""
        length = self.train.max_length or max_length or self.data.max_length
        return dataclasses.replace(self.data, val_ratio=self.val_ratio, train_on_prompt=self.train.train_on_prompt,
                                   max_length=int(length))

    def with_absolute_paths(self) -> RunConfig:
        """A copy whose dataset, validation and local model paths are absolute (relative ones are taken from the
        current folder), so the copy saved in the run folder still works from anywhere."""
        model = Path(self.model).expanduser()
        return dataclasses.replace(
            self, model=str(model.resolve()) if model.exists() else self.model,
            dataset=str(Path(self.dataset).expanduser().resolve()),
            validation=str(Path(self.validation).expanduser().resolve()) if self.validation else None)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["train"], out["data"] = self.train.to_dict(), self.data.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(**_known(cls, data, "run"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, source: str = "the run file") -> RunConfig:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{source} is not valid YAML: {err}", f"fix {source}.") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source} should hold a mapping (model:, dataset:, train:, ...).", f"fix {source}.")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err.message}", err.fix) from None
        except TypeError as err:  # a required key missing, in a form the dataclass reports
            raise ConfigError(f"{source}: {err}", f"fix {source}.") from None

    def save(self, path: str | Path) -> Path:
        from studio.storage.workspace import write_atomic

        path = Path(path)
        write_atomic(path, self.to_yaml())
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a RUN.yaml; ConfigError naming the file when it is missing, not YAML, or holds a bad value."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"Run file {path} does not exist.", "give the path of a RUN.yaml (or a run's config.yaml).")
        return cls.from_yaml(path.read_text(encoding="utf-8"), str(path))


def default_run_name(config: RunConfig) -> str:
    """The model's folder or repo name and the time: `Qwen2.5-0.5B-Instruct-20250101-120000`."""
    base = Path(config.model.rstrip("/")).name or "run"
    return f"{base[:40]}-{time.strftime('%Y%m%d-%H%M%S')}"
