"""Loading and validating config.yaml.

The JSON Schema (workflow/schemas/config.schema.yaml) checks shape and types and fills
defaults; ``check_semantics`` then checks what a schema cannot (language codes exist, lid.labels
names configured languages).  That the LID model can label every configured language is checked
against the model itself when the clean stage starts (pipeline.lid).  Every error names the config key and the value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pipeline import langs
from pipeline.errors import PolyforgeError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(PolyforgeError, ValueError):
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


# How a user types a boolean on the command line (``--config update_lock=true``): Snakemake turns only
# ``True``/``False`` into booleans and passes every other spelling, and every nested value, as a string.
_BOOLEAN_SPELLINGS = {
    "true": True, "yes": True, "on": True, "1": True,
    "false": False, "no": False, "off": False, "0": False,
}  # fmt: skip
_NULL_SPELLINGS = {"null", "none", "~"}
_INTEGER = re.compile(r"[+-]?\d+")


def _schema_types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local ``$ref``s (``#/$defs/alpha``), keeping the keys that sit beside the reference."""
    while "$ref" in schema and str(schema["$ref"]).startswith("#/"):
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _coerce_scalar(value: str, types: list[str]) -> Any:
    """A command-line string as the schema's type; the string itself when it is not a spelling of one."""
    if "string" in types:
        return value
    text = value.strip()
    if "boolean" in types and text.lower() in _BOOLEAN_SPELLINGS:
        return _BOOLEAN_SPELLINGS[text.lower()]
    if "integer" in types and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return int(number) if _INTEGER.fullmatch(text) else number
    if "null" in types and text.lower() in _NULL_SPELLINGS:
        return None
    return value


def coerce_strings(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """Turn strings into the booleans and numbers the schema asks for, recursively; return the value.

    ``snakemake --config update_lock=true`` passes ``'true'``, and a nested override such as
    ``--config 'vocab={vocab_size: 500}'`` passes ``'500'``: these become ``True`` and ``500``. A string
    that spells no value of the schema's type is left alone, so validation still names it.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(value, str):
        return _coerce_scalar(value, _schema_types(schema))
    if type(value) is int and value in (0, 1) and _schema_types(schema) == ["boolean"]:
        return bool(value)  # ``update_lock=1``: Snakemake has already made it the integer 1
    if type(value) is int and _schema_types(schema) == ["string"]:
        return str(value)  # ``output_dir=2024``: Snakemake makes it an integer even when quoted
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = coerce_strings(value[key], sub, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value[:] = [coerce_strings(item, schema["items"], root) for item in value]
    return value


def validate_schema(config: dict[str, Any]) -> dict[str, Any]:
    """Coerce command-line strings, check the config against the schema and fill defaults, in place.

    Raise ConfigError naming every bad key.
    """
    schema = load_schema()
    coerce_strings(config, schema)
    validator = _validator_with_defaults()(schema)
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


def pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The parallel pairs the workflow builds: pivot–X for every other configured language."""
    pivot = config["pivot"]
    return [(pivot, code) for code in config["languages"] if code != pivot]


# ----------------------------------------------------------------------------- pair names

PAIR_SEPARATOR = "-"
# A canonical code: the language subtag, plus a script subtag for languages written in two (zh-Hans, sr-Latn).
_CODE = r"[a-z]{2,8}(?:-[A-Z][a-z]{3})?"
_PAIR_NAME = re.compile(rf"({_CODE}){PAIR_SEPARATOR}({_CODE})")


def pair_name(src: str, tgt: str) -> str:
    """The name of a pair in file names and reports: ``en-de``, ``en-zh-Hans``."""
    return f"{src}{PAIR_SEPARATOR}{tgt}"


def pair_names(config: Mapping[str, Any]) -> list[str]:
    """The names of the pairs the workflow builds (``pairs``), in the same order."""
    return [pair_name(src, tgt) for src, tgt in pairs(config)]


def parse_pair(name: str, languages: Iterable[str] | None = None) -> tuple[str, str]:
    """``en-zh-Hans`` → ``("en", "zh-Hans")``; raise ValueError for a name that is not a pair.

    Codes may hold the separator themselves (a script subtag), so a name splits where both sides are
    canonical codes; given ``languages``, both sides must also be among them.
    """
    if languages is not None:
        codes = sorted(set(languages))
        found = [(a, b) for a in codes for b in codes if a != b and pair_name(a, b) == name]
        if len(found) != 1:
            raise ValueError(f"{name!r} is not a pair of two of the languages {codes}")
        return found[0]
    match = _PAIR_NAME.fullmatch(name)
    if match is None or match.group(1) == match.group(2):
        raise ValueError(f"{name!r} is not a pair name such as 'en-de' or 'en-zh-Hans'")
    return match.group(1), match.group(2)


# ----------------------------------------------------------------------------- what each stage reads

# Keys that say where this machine keeps files and whether a changed source may replace the locked one:
# they never change a stage's data, so they are never a rule's params (an edit reruns nothing).
LOCAL_KEYS = ("cache_dir", "lock_file", "update_lock")
# Sections read only after the shards (training, evaluation, experiments): editing them must not rebuild data.
DOWNSTREAM_KEYS = ("train", "eval", "experiments")
# Settings of how a stage runs, not of what it writes (the clean stage's output does not depend on them).
EXECUTION_KEYS = {"clean": ("scheduler", "workers", "threads"), "shards": ("threads",)}
# Mixture keys read only by training (q_train and its expected passes): the vocabulary and the shards never
# read them, so they live in the training mixture alone (mixture/mixture.json) and editing them rebuilds no data.
TRAIN_MIXTURE_KEYS = ("alpha_train", "token_budget")
# Source keys that only describe a source (copied into the manifest) or say which path it takes.
SOURCE_METADATA_KEYS = ("role", "licence", "attribution")
# Source keys that shape extraction only: editing them re-extracts but does not download again.
SOURCE_EXTRACT_KEYS = ("format", "lang", "lang_field", "text_field", "max_docs", "languages")


def _sorted(value: Any) -> Any:
    """A deep copy with every dict's keys sorted: a rule's params compare by ``repr``, so key order must not matter."""
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(item) for item in value]
    return copy.deepcopy(value)


def _without(section: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    drop = set(keys)
    return {key: value for key, value in section.items() if key not in drop}


def download_slice(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What the download of ``source`` reads: where and what to fetch (not how it is extracted or credited)."""
    entry = _without(config["sources"][source], (*SOURCE_METADATA_KEYS, *SOURCE_EXTRACT_KEYS))
    return _sorted({"sources": {source: entry}})


def lid_model_slice(config: Mapping[str, Any]) -> dict[str, Any]:
    """What fetching the LID model reads: ``lid.model``."""
    return _sorted({"lid": {"model": config["lid"]["model"]}})


def extract_slice(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What extracting ``source`` reads: its entry, the language codes, the pivot and the splits (and, for a UDHR
    eval source, ``eval.udhr.extra_languages``)."""
    entry = _without(config["sources"][source], ("licence", "attribution"))
    extract = {"sources": {source: entry}, "languages": list(config["languages"]), "pivot": config["pivot"],
               "splits": config["splits"]}  # fmt: skip
    if entry["role"] == "eval" and entry["format"] == "udhr":  # UDHR also gives the languages no model sees
        extract["eval"] = {"udhr": {"extra_languages": config["eval"]["udhr"]["extra_languages"]}}
    return _sorted(extract)


def clean_slice(config: Mapping[str, Any], sources: Iterable[str]) -> dict[str, Any]:
    """What the clean stage reads: languages with their options, the pivot, ``lid``, ``clean`` (without how
    it runs) and the entries of the sources it reads (without their credits)."""
    return _sorted({
        "languages": config["languages"],
        "pivot": config["pivot"],
        "lid": config["lid"],
        "clean": _without(config["clean"], EXECUTION_KEYS["clean"]),
        "sources": {name: _without(config["sources"][name], ("licence", "attribution")) for name in sources},
    })  # fmt: skip


def mixture_slice(config: Mapping[str, Any]) -> dict[str, Any]:
    """The whole ``mixture`` section (both steps of the mixture stage together)."""
    return _sorted({"mixture": config["mixture"]})


def vocab_mixture_slice(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the vocabulary's mixture (mixture/vocab.json) reads: ``mixture`` without the training keys."""
    return _sorted({"mixture": _without(config["mixture"], TRAIN_MIXTURE_KEYS)})


def train_mixture_slice(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the training mixture (mixture/mixture.json, from mixture/vocab.json) adds: α_train and the budget."""
    return _sorted({"mixture": {key: config["mixture"][key] for key in TRAIN_MIXTURE_KEYS}})


def vocab_slice(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the vocab stage reads: ``vocab``, the seed and the language codes (for language tags)."""
    return _sorted({"vocab": config["vocab"], "seed": config["seed"], "languages": list(config["languages"])})


def shards_slice(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the shards stage reads: the whole config without local paths and execution settings, because the
    manifest records it (so every edit that the manifest would show rebuilds the shards). The training
    mixture's keys are left out: they shape training batches, not the shards."""
    result = _without(config, LOCAL_KEYS + ("output_dir",) + DOWNSTREAM_KEYS)
    if "mixture" in result:
        result["mixture"] = _without(result["mixture"], TRAIN_MIXTURE_KEYS)
    for section, keys in EXECUTION_KEYS.items():
        if section in result:
            result[section] = _without(result[section], keys)
    return _sorted(result)


def with_local_settings(settings: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's slice plus the machine-local keys (cache, lock file, update_lock) and execution settings
    from ``config``: what the stage needs at run time beyond what shapes its output."""
    result = copy.deepcopy(dict(settings))
    result.update({key: config[key] for key in LOCAL_KEYS if key in config})
    for section, keys in EXECUTION_KEYS.items():
        if section in result:
            result[section].update({key: config[section][key] for key in keys if key in config.get(section, {})})
    return result
