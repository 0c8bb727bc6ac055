"""The config file is a contract: every mistake names the file, the path in the document and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluicegate.autoconfig import config_from_environment
from sluicegate.config import ConfigError, config_from_dict, load_config

GOOD = """
providers:
  openai:     {type: openai, api_key: ${OPENAI_API_KEY}}
  claude:     {type: anthropic, api_key: ${ANTHROPIC_API_KEY}, base_url: https://api.anthropic.com}
  local:      {type: openai, base_url: http://127.0.0.1:11434/v1}
  gemini:     {type: gemini, api_key: ${GEMINI_API_KEY:-fallback-key}}
models:
  - name: smart
    deployments:
      - {provider: openai, model: gpt-4o}
      - {provider: claude, model: claude-sonnet-4-5}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluicegate.yaml"
    path.write_text(text)
    return path


def test_documented_example_loads_with_env_expansion(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-ant"}
    config = load_config(write(tmp_path, GOOD), environ=env)
    assert config.providers["openai"].api_key == "sk-1"
    assert config.providers["claude"].api_key == "sk-ant"
    assert config.providers["gemini"].api_key == "fallback-key"
    assert [d.provider for d in config.models[0].deployments] == ["openai", "claude"]


def test_missing_variable_names_file_path_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"OPENAI_API_KEY": "x"})
    message = str(caught.value)
    assert str(path) in message and "providers.claude.api_key" in message and "ANTHROPIC_API_KEY" in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"providers": {"a": {"type": "openai", "base_url": "http://x", "colour": "red"}}},
            "at providers.a: unknown key `colour`",
        ),
        ({"server": {"port": "eighty"}}, "at server.port: Expected `int`, got `str`"),
        ({"providers": {"a": {"type": "warp-drive"}}}, "at providers.a.type: unknown provider type 'warp-drive'"),
        (
            {"providers": {}, "models": [{"name": "m", "deployments": [{"provider": "ghost", "model": "x"}]}]},
            "at models[0].deployments[0].provider: unknown provider 'ghost'",
        ),
        ({"models": [{"name": "m"}]}, "at models[0]: Object missing required field `deployments`"),
        ({"models": [{"name": "m", "deployments": []}]}, "at models[0].deployments: an alias needs at least one"),
        ({"bogus_top": 1}, "at the top level: unknown key `bogus_top`"),
    ],
)
def test_errors_name_the_path(document: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(document, source="gw.yaml", environ={})
    assert str(caught.value).startswith("gw.yaml: ")
    assert expected in str(caught.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "providers: [unclosed"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_autoconfig_from_key_variables() -> None:
    config = config_from_environment({"OPENAI_API_KEY": "sk-a", "GROQ_API_KEY": "gsk", "SLUICEGATE_MASTER_KEY": "mk"})
    assert set(config.providers) == {"openai", "groq", "demo"}
    assert config.providers["groq"].api_key == "gsk"
    assert config.master_key == "mk"
    assert [m.name for m in config.models] == ["demo"]


def test_autoconfig_without_keys_serves_demo_only() -> None:
    config = config_from_environment({})
    assert set(config.providers) == {"demo"} and config.master_key is None


def test_yaml_on_is_a_key_not_a_boolean(tmp_path: Path) -> None:
    text = "guardrails:\n  - {name: g, type: pii, on: [input, output], action: redact}\nserver: {port: 4001}\n"
    config = load_config(write(tmp_path, text), environ={})
    assert config.guardrails[0].on == ["input", "output"]
