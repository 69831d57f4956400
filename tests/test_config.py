"""Settings precedence and every *Params validation message."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.config import (
    DEFAULT_HOME,
    SETTINGS_FILE,
    GenerationParams,
    LoadParams,
    Settings,
    field_help,
    field_range,
)
from studio.errors import ConfigError


def write_settings(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / SETTINGS_FILE
    path.write_text(text, encoding="utf-8")
    return path


# Precedence ---------------------------------------------------------------------------------
def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    settings = Settings.resolve({}, {"STUDIO_HOME": str(tmp_path)})
    assert settings.workspace == tmp_path
    assert (settings.host, settings.port, settings.precision, settings.share) == ("127.0.0.1", 7860, "auto", False)
    assert not settings.is_public


def test_default_home_without_env_or_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # never read the developer's own ~/.llm-studio/settings.yaml
    write_settings(tmp_path / DEFAULT_HOME.name, "port: 9400\n")
    settings = Settings.resolve({}, {})
    assert settings.workspace == tmp_path / DEFAULT_HOME.name
    assert settings.port == 9400


def test_file_overrides_defaults(tmp_path: Path) -> None:
    write_settings(tmp_path, "port: 9000\nprecision: 4bit\nshare: 'yes'\nmodel: some/model\n")
    settings = Settings.resolve({}, {"STUDIO_HOME": str(tmp_path)})
    assert (settings.port, settings.precision, settings.share, settings.model) == (9000, "4bit", True, "some/model")
    assert settings.host == "127.0.0.1"  # untouched default


def test_env_overrides_file_and_cli_overrides_env(tmp_path: Path) -> None:
    write_settings(tmp_path, "port: 9000\nhost: 0.0.0.0\nprecision: 4bit\n")
    env = {"STUDIO_HOME": str(tmp_path), "STUDIO_PORT": "9100", "STUDIO_PRECISION": "fp32"}
    settings = Settings.resolve({}, env)
    assert (settings.port, settings.precision, settings.host) == (9100, "fp32", "0.0.0.0")
    settings = Settings.resolve({"port": 9200, "precision": None}, env)  # None = flag not given
    assert (settings.port, settings.precision) == (9200, "fp32")


def test_studio_home_picks_the_settings_file_and_cli_workspace_beats_it(tmp_path: Path) -> None:
    env_home, cli_home = tmp_path / "env-home", tmp_path / "cli-home"
    write_settings(env_home, "port: 9001\n")
    write_settings(cli_home, "port: 9002\n")
    assert Settings.resolve({}, {"STUDIO_HOME": str(env_home)}).port == 9001
    settings = Settings.resolve({"workspace": str(cli_home)}, {"STUDIO_HOME": str(env_home)})
    assert (settings.workspace, settings.port) == (cli_home, 9002)


def test_resolve_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("STUDIO_SHARE", "on")
    settings = Settings.resolve()
    assert settings.workspace == tmp_path and settings.share and settings.is_public


def test_cli_keys_that_are_not_settings_are_ignored(tmp_path: Path) -> None:
    settings = Settings.resolve({"command": "chat", "port": 8123}, {"STUDIO_HOME": str(tmp_path)})
    assert settings.port == 8123


def test_load_params_from_settings(tmp_path: Path) -> None:
    settings = Settings.resolve({"model": "org/model", "precision": "4bit"}, {"STUDIO_HOME": str(tmp_path)})
    params = settings.load_params()
    assert (params.model, params.precision, params.double_quant) == ("org/model", "4bit", True)
    assert settings.load_params("other/model").model == "other/model"


# Bad values name the field and where the value came from -----------------------------------
@pytest.mark.parametrize(("yaml_text", "words"), [
    ("port: abc\n", ["port", "whole number", "'abc'"]),
    ("port: 0\n", ["port", "between 1 and 65535", "got 0"]),
    ("precision: 5bit\n", ["precision", "5bit", "4bit"]),
    ("share: maybe\n", ["share", "true or false", "maybe"]),
    ("colour: blue\n", ["unknown setting", "colour"]),
    ("auth: nocolon\n", ["auth", "user:password"]),
    ("host: [a, b]\n", ["host", "should be text"]),
])
def test_bad_value_in_settings_file(tmp_path: Path, yaml_text: str, words: list[str]) -> None:
    path = write_settings(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        Settings.resolve({}, {"STUDIO_HOME": str(tmp_path)})
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_settings_file_that_is_not_yaml_or_not_a_mapping(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "port: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        Settings.resolve({}, {"STUDIO_HOME": str(tmp_path)})
    assert str(path) in str(info.value)
    write_settings(tmp_path, "- just\n- a list\n")
    with pytest.raises(ConfigError, match="should hold a mapping"):
        Settings.resolve({}, {"STUDIO_HOME": str(tmp_path)})


@pytest.mark.parametrize(("key", "value", "words"), [
    ("STUDIO_PORT", "seventy", ["port", "whole number", "seventy"]),
    ("STUDIO_PORT", "70000", ["port", "between 1 and 65535", "70000"]),
    ("STUDIO_PRECISION", "int3", ["precision", "int3"]),
    ("STUDIO_DEVICE", "tpu", ["device", "tpu"]),
    ("STUDIO_TRUST_REMOTE_CODE", "sure", ["trust_remote_code", "sure"]),
])
def test_bad_value_in_environment(tmp_path: Path, key: str, value: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.resolve({}, {"STUDIO_HOME": str(tmp_path), key: value})
    assert f"environment variable {key}" in str(info.value)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("cli", "flag", "words"), [
    ({"port": 0}, "--port", ["between 1 and 65535", "got 0"]),
    ({"port": "http"}, "--port", ["whole number", "http"]),
    ({"precision": "3bit"}, "--precision", ["3bit"]),
    ({"auth": "admin"}, "--auth", ["user:password"]),
])
def test_bad_value_on_command_line(tmp_path: Path, cli: dict, flag: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.resolve(cli, {"STUDIO_HOME": str(tmp_path)})
    assert f"command-line option {flag}" in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_cli_value_fixes_a_bad_env_value(tmp_path: Path) -> None:
    """The winning source is the one validated: a good flag overrides a bad environment value."""
    settings = Settings.resolve({"port": 8000}, {"STUDIO_HOME": str(tmp_path), "STUDIO_PORT": "0"})
    assert settings.port == 8000


# GenerationParams / LoadParams ----------------------------------------------------------------
def test_generation_params_defaults_round_trip() -> None:
    params = GenerationParams(stop="###\n\nEND")
    assert params.stop == ["###", "END"]
    again = GenerationParams.from_dict({**params.to_dict(), "unknown": 1})
    assert again == params


@pytest.mark.parametrize(("field", "value", "words"), [
    ("temperature", 2.5, ["`temperature`", "between 0.0 and 2.0", "2.5"]),
    ("temperature", -0.1, ["`temperature`", "-0.1"]),
    ("top_p", 0.0, ["`top_p`", "between 0.05 and 1.0"]),
    ("top_k", -1, ["`top_k`", "between 0 and 500"]),
    ("top_k", 2.5, ["`top_k`", "whole number", "2.5"]),
    ("max_new_tokens", 0, ["`max_new_tokens`", "between 1 and 8192", "got 0"]),
    ("repetition_penalty", 0.5, ["`repetition_penalty`", "between 1.0 and 2.0"]),
    ("seed", -5, ["`seed`", "-5"]),
    ("temperature", "hot", ["`temperature`", "'hot'"]),
    ("max_new_tokens", True, ["`max_new_tokens`", "True"]),
    ("stop", ["ok", ""], ["`stop`", "non-empty"]),
    ("stop", [3], ["`stop`"]),
])
def test_generation_params_validation(field: str, value: object, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        GenerationParams(**{field: value})
    assert info.value.fix  # every message carries a fix
    for word in words:
        assert word in str(info.value)


def test_generation_params_accept_whole_floats_from_number_boxes() -> None:
    params = GenerationParams(top_k=40.0, max_new_tokens=12.0, seed=3.0)
    assert (params.top_k, params.max_new_tokens, params.seed) == (40, 12, 3)
    assert isinstance(params.max_new_tokens, int)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"model": "  "}, ["No model given"]),
    ({"model": "x", "precision": "2bit"}, ["`precision`", "2bit", "4bit"]),
    ({"model": "x", "device": "tpu"}, ["`device`", "tpu", "cpu"]),
])
def test_load_params_validation(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        LoadParams(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_load_params_strip_the_model_name() -> None:
    assert LoadParams(model="  org/name \n").model == "org/name"


def test_field_metadata_feeds_the_ui() -> None:
    assert field_range(GenerationParams, "temperature") == (0.0, 2.0, 0.05)
    assert field_range(Settings, "port")[:2] == (1, 65535)
    assert "greedy" in field_help(GenerationParams, "temperature")
    assert field_help(Settings, "precision") == field_help(LoadParams, "precision")
