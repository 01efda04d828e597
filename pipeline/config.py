"""Loading and validating config.yaml.

The JSON Schema (workflow/schemas/config.schema.yaml) checks shape and types and fills
defaults; ``check_semantics`` then checks what a schema cannot (language codes exist, lid.labels
names configured languages).  That the LID model can label every configured language is checked
against the model itself when the clean stage starts (pipeline.lid).  Every error names the config key and the value.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pipeline import langs

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value that is wrong, with the key that holds it."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = key if key != "<top level>" else "the top level"
        return f"unknown config key(s) {', '.join(repr(e) for e in extra)} under {where}"
    return f"config key {key!r}: value {error.instance!r} is invalid: {error.message}"


def _validator_with_defaults() -> type:
    """A validator class that also fills in the schema's defaults (as snakemake's validate does)."""
    base = jsonschema.validators.validator_for(load_schema())

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_schema(config: dict[str, Any]) -> dict[str, Any]:
    """Check the config against the schema and fill defaults, in place; raise ConfigError."""
    validator = _validator_with_defaults()(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors))
    return config


def check_semantics(config: dict[str, Any]) -> dict[str, Any]:
    """Normalize language codes and refuse what the schema cannot see; return the config."""
    config["languages"] = _canonical_languages(config["languages"])
    config["pivot"] = _canonical_code(config.get("pivot", "en"), "pivot")
    if config["pivot"] not in config["languages"]:
        raise ConfigError(f"config key 'pivot': value {config['pivot']!r} is not one of the configured languages")
    _check_lid_coverage(config)
    for name, source in config["sources"].items():
        _check_source(name, source)
    return config


def _canonical_code(tag: str, key: str) -> str:
    try:
        return langs.canonical(tag)
    except langs.UnknownLanguageError:
        raise ConfigError(f"config key {key!r}: value {tag!r} is not a known language code") from None


def _canonical_languages(languages: dict[str, dict]) -> dict[str, dict]:
    result: dict[str, dict] = {}
    for tag in languages:
        code = _canonical_code(tag, f"languages.{tag}")
        if code in result:
            raise ConfigError(f"config key 'languages.{tag}': {tag!r} is the same language as another entry ({code})")
        result[code] = dict(languages[tag] or {})
    return dict(sorted(result.items()))


def _check_lid_coverage(config: dict[str, Any]) -> None:
    """The LID settings that need no model: lid.labels names configured languages that use LID.

    Whether the model can label every configured language is checked against the model's own labels
    when the clean stage starts (pipeline.lid.label_map): on a fresh machine the model file does not
    exist yet when the Snakefile is parsed.
    """
    lid = config.setdefault("lid", {})
    labels: dict[str, Any] = {}
    for tag, value in (lid.get("labels") or {}).items():
        code = _canonical_code(tag, f"lid.labels.{tag}")
        if code not in config["languages"]:
            raise ConfigError(f"config key 'lid.labels.{tag}': {code!r} is not one of the configured languages")
        if config["languages"][code].get("lid", True) is False:
            raise ConfigError(f"config key 'lid.labels.{tag}': language {code!r} has 'lid: false' (it skips LID)")
        labels[code] = value
    lid["labels"] = dict(sorted(labels.items()))


def _check_source(name: str, source: dict[str, Any]) -> None:
    required = {
        "url": ("url", "urls"),
        "deb": ("packages",),
        "npm": ("package", "version"),
        "pypi": ("package", "version"),
        "hf": ("dataset",),
        "local": ("path",),
    }[source["adapter"]]
    if source["adapter"] == "url":
        if not any(k in source for k in required):
            raise ConfigError(f"config key 'sources.{name}': adapter 'url' needs 'url' (+ 'sha256') or 'urls'")
        if "url" in source and "sha256" not in source:
            raise ConfigError(f"config key 'sources.{name}.sha256': adapter 'url' needs a pinned sha256")
    else:
        for key in required:
            if key not in source:
                raise ConfigError(f"config key 'sources.{name}.{key}': required by adapter {source['adapter']!r}")
    if "lang" in source:
        source["lang"] = _canonical_code(source["lang"], f"sources.{name}.lang")
    if "languages" in source:
        source["languages"] = [_canonical_code(t, f"sources.{name}.languages") for t in source["languages"]]


def prepare(config: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalize a loaded config dict (what the Snakefile calls)."""
    return check_semantics(validate_schema(config))


def load(path: str | Path) -> dict[str, Any]:
    """Read, validate and normalize a config file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return prepare(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def output_root(config: dict[str, Any]) -> Path:
    return Path(config.get("output_dir", "results"))


def cache_root(config: dict[str, Any]) -> Path:
    return Path(config.get("cache_dir", "~/.cache/polyforge")).expanduser()


def train_sources(config: dict[str, Any]) -> list[str]:
    return sorted(name for name, s in config["sources"].items() if s["role"] == "train")


def eval_sources(config: dict[str, Any]) -> list[str]:
    return sorted(name for name, s in config["sources"].items() if s["role"] == "eval")


def pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The parallel pairs the workflow builds: pivot–X for every other configured language."""
    pivot = config["pivot"]
    return [(pivot, code) for code in config["languages"] if code != pivot]
