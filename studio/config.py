"""Typed settings and *Params dataclasses: one source for defaults, help text, ranges and validation.

Settings come, lowest priority first, from: the defaults below < `settings.yaml` in the workspace
< `STUDIO_*` environment variables < CLI flags (`Settings.resolve`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml

from studio.errors import ConfigError

Precision = Literal["auto", "bf16", "fp16", "fp32", "8bit", "4bit"]
Device = Literal["auto", "cuda", "mps", "cpu"]

DEFAULT_HOME = Path("~/.llm-studio")
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"  # loaded at start-up when none is configured (README: models per hardware tier)
DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "studio-demo"  # the offline fallback (a checkout)
DEMO_NOTE = "studio-demo is a tiny model for trying the studio offline, not a useful assistant."
SETTINGS_FILE = "settings.yaml"
_P = TypeVar("_P")


def param_field(default: Any, help: str, **ui: Any) -> Any:
    """A dataclass field whose metadata feeds the UI (`info=`, slider ranges) and `--help`."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **ui})
    return field(default=default, metadata={"help": help, **ui})


def field_help(cls: type, name: str) -> str:
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("help", "")


def field_range(cls: type, name: str) -> tuple[float, float, float]:
    """(minimum, maximum, step) declared for a numeric field, for sliders and number boxes."""
    meta = {f.name: f for f in dataclasses.fields(cls)}[name].metadata
    return meta["min"], meta["max"], meta.get("step", 1)


def _field_error(name: str, message: str, fix: str) -> ConfigError:
    """A ConfigError that remembers which field it is about, so `Settings.resolve` can name the source."""
    err = ConfigError(message, fix)
    err.field = name  # type: ignore[attr-defined]
    return err


def check_range(cls: type, obj: Any, name: str) -> None:
    lo, hi, _ = field_range(cls, name)
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _field_error(name, f"`{name}` should be a number between {lo} and {hi}, got {value!r}.",
                           f"set {name} within [{lo}, {hi}].")
    declared = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if declared == "int" and isinstance(value, float) and not value.is_integer():
        raise _field_error(name, f"`{name}` should be a whole number, got {value!r}.", f"set {name} to an integer.")


def check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise _field_error(name, f"`{name}` should be one of {', '.join(choices)}, got {value!r}.",
                           f"pick one of: {', '.join(choices)}.")


class SavedParams:
    """Mixin for *Params dataclasses stored as JSON/YAML: `to_dict()`, and `from_dict()` ignoring unknown keys
    (so a preset or run file written by another version still loads)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_P], data: dict[str, Any]) -> _P:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class GenerationParams(SavedParams):
    """Sampling parameters shared by every tab; same params + same seed give the same output."""

    temperature: float = param_field(0.7, "0 = greedy (deterministic); higher = more varied.", min=0.0, max=2.0, step=0.05)
    top_p: float = param_field(0.95, "Nucleus sampling: keep the smallest set of tokens whose probability adds up to this.", min=0.05, max=1.0, step=0.01)
    top_k: int = param_field(50, "Keep only the k most likely tokens (0 = no limit).", min=0, max=500, step=1)
    max_new_tokens: int = param_field(256, "Upper bound on the answer's length in tokens.", min=1, max=8192, step=1)
    repetition_penalty: float = param_field(1.0, "Above 1 discourages repeating tokens already in the text.", min=1.0, max=2.0, step=0.01)
    seed: int = param_field(0, "Random seed: the same seed and parameters reproduce the same answer.", min=0, max=2**31 - 1, step=1)
    stop: list[str] = param_field([], "Stop strings: generation ends when one appears (it is not included in the answer).")

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "seed"):
            check_range(GenerationParams, self, name)
        self.top_k, self.max_new_tokens, self.seed = int(self.top_k), int(self.max_new_tokens), int(self.seed)
        if self.stop is None:
            self.stop = []
        if isinstance(self.stop, str):
            self.stop = [s for s in self.stop.split("\n") if s]
        if not isinstance(self.stop, (list, tuple)) or not all(isinstance(s, str) and s for s in self.stop):
            raise _field_error("stop", f"`stop` should be a list of non-empty strings, got {self.stop!r}.",
                               "remove empty stop strings.")
        self.stop = list(self.stop)


@dataclass
class LoadParams:
    """What to load into the model manager."""

    model: str = param_field("", "A Hugging Face hub id (org/name) or a local folder holding a causal LM.")
    precision: str = param_field("auto", "auto = bf16/fp16 on a GPU, fp32 on CPU; 8bit/4bit quantise with bitsandbytes (4bit = NF4).")
    double_quant: bool = param_field(True, "4-bit only: quantise the quantisation constants too (saves ~0.4 bit/param).")
    device: str = param_field("auto", "auto = CUDA if present, else Apple MPS, else CPU.")
    trust_remote_code: bool = param_field(False, "Run Python code shipped with the model. Only for models you trust.")

    def __post_init__(self) -> None:
        self.model = str(self.model).strip()
        if not self.model:
            raise ConfigError("No model given.", "enter a hub id such as Qwen/Qwen2.5-0.5B-Instruct or a local model folder.")
        check_choice(self, "precision", get_args(Precision))
        check_choice(self, "device", get_args(Device))


@dataclass
class Settings:
    """Everything the studio process is configured with."""

    workspace: Path = param_field(DEFAULT_HOME, "Folder that holds everything the studio writes (indexes, runs, adapters, presets, logs).")
    host: str = param_field("127.0.0.1", "Address the web UI listens on. Anything but loopback needs --auth.")
    port: int = param_field(7860, "Port of the web UI.", min=1, max=65535)
    model: str = param_field("", "Model loaded at start-up (hub id or folder); empty = none.")
    precision: str = param_field("auto", field_help(LoadParams, "precision"))
    double_quant: bool = param_field(True, field_help(LoadParams, "double_quant"))
    device: str = param_field("auto", field_help(LoadParams, "device"))
    trust_remote_code: bool = param_field(False, field_help(LoadParams, "trust_remote_code"))
    share: bool = param_field(False, "Create a public Gradio share link (needs --auth).")
    auth: str = param_field("", "user:password required to open the UI.")
    chroma_url: str = param_field("", "A Chroma server (http://host:port, started with `chroma run`) holding the knowledge "
                                  "bases; empty = a local index in the workspace.")

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).expanduser()
        check_range(Settings, self, "port")
        check_choice(self, "precision", get_args(Precision))
        check_choice(self, "device", get_args(Device))
        if self.auth and ":" not in self.auth:
            raise _field_error("auth", f"`auth` should look like user:password, got {self.auth!r}.", "pass --auth user:password.")

    @property
    def is_public(self) -> bool:
        return self.share or self.host not in ("127.0.0.1", "localhost", "::1")

    def load_params(self, model: str | None = None) -> LoadParams:
        return LoadParams(
            model=model or self.model,
            precision=self.precision,
            double_quant=self.double_quant,
            device=self.device,
            trust_remote_code=self.trust_remote_code,
        )

    @classmethod
    def resolve(cls, cli: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
        """Merge defaults < workspace settings.yaml < STUDIO_* env < `cli` (None values are ignored).

        `cli` keys that are not settings (an argparse namespace's subcommand, say) are ignored.
        Raises ConfigError naming the bad setting and where its value came from.
        """
        environ = dict(os.environ if environ is None else environ)
        names = {f.name for f in dataclasses.fields(cls)}
        cli = {k: _coerce(k, v, _cli_flag(k)) for k, v in (cli or {}).items() if v is not None and k in names}
        env = _from_environ(environ)
        home = Path(cli.get("workspace") or env.get("workspace") or DEFAULT_HOME).expanduser()
        settings_file = home / SETTINGS_FILE
        from_file = _from_file(settings_file)
        sources = {**{k: str(settings_file) for k in from_file}, **{k: _env_key(k) for k in env},
                   **{k: _cli_flag(k) for k in cli}}
        try:
            return cls(**{**from_file, **env, **cli, "workspace": home})
        except ConfigError as err:
            source = sources.get(getattr(err, "field", None))
            if source is None:
                raise
            raise ConfigError(f"{source}: {err.message}", err.fix) from None


def _cli_flag(name: str) -> str:
    return f"command-line option --{name.replace('_', '-')}"


def _env_key(name: str) -> str:
    return "environment variable " + ("STUDIO_HOME" if name == "workspace" else f"STUDIO_{name.upper()}")


_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false (also 1/0, yes/no, on/off)"}


def _coerce(name: str, raw: Any, source: str) -> Any:
    return coerce(Settings, name, raw, source)


def coerce(cls: type, name: str, raw: Any, source: str) -> Any:
    """Turn a raw value (from a file, the environment or the command line) into the type of `cls`'s field `name`.

    Raises ConfigError naming `source` when it cannot be read as that type; ranges are the dataclass's own checks."""
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if kind == "str":
        if raw is None:
            return ""
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ConfigError(f"{source}: `{name}` should be text, got {raw!r}.", f"fix {name} in {source}.")
        return str(raw)
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text in ("1", "true", "yes", "on")
        if kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: `{name}` should be {_KIND_WORDS[kind]}, got {raw!r}.",
                          f"fix {name} in {source}.") from None
    return raw


def _from_environ(environ: dict[str, str]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(Settings)}
    out: dict[str, Any] = {}
    if environ.get("STUDIO_HOME"):
        out["workspace"] = environ["STUDIO_HOME"]
    for name in names - {"workspace"}:
        key = f"STUDIO_{name.upper()}"
        if key in environ:
            out[name] = _coerce(name, environ[key], _env_key(name))
    return out


def _from_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}", f"fix or delete {path}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} should hold a mapping of setting: value.", f"fix or delete {path}.")
    names = {f.name for f in dataclasses.fields(Settings)} - {"workspace"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}.", f"use only: {', '.join(sorted(names))}."
        )
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}
