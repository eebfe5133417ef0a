"""One way to check a config section: a table of keys, each with a default, a check and the words for
what is allowed. The model config, the run config's data / train / sample sections and the sweep's
eval section are all such tables; every refusal is a ConfigError naming source, key, value and allowed.
"""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any, Callable, Iterable, Mapping, NamedTuple


class ConfigError(ValueError):
    """Bad configuration input; the message names the source, key, value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str, source: str | None = None):
        value = list(value) if isinstance(value, tuple) else value  # show lists as the user wrote them
        self.key, self.value, self.allowed, self.source = key, value, allowed, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}key {key!r} = {value!r} is invalid; allowed: {allowed}")


class Key(NamedTuple):
    default: Any
    check: Callable[[Any], bool]
    allowed: str


def require(ok: bool, key: str, value: Any, allowed: str, source: str | None) -> None:
    """Refuse ``value`` of ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(key, value, allowed, source)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'did you mean X? ' for the closest choice to a misspelled ``word``, else ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def flatten_keys(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: {train: {lr: 1}} -> {"train.lr": 1} (an empty mapping stays a value)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_keys(value, path + "."))
        else:
            out[path] = value
    return out


_SCI = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def check_section(given: Any, keys: Mapping[str, Key], source: str | None, section: str | None = None,
                  defaults: bool = True) -> dict[str, Any]:
    """``given`` checked key by key against ``keys`` (unknown keys refused); with ``defaults`` every key
    missing from it takes its default. Error keys are ``section.key`` when a section is named."""
    given = {} if given is None else given
    require(isinstance(given, Mapping), section or "(section)", given, "a mapping of keys to values", source)
    out: dict[str, Any] = {}
    for key, value in given.items():
        name = f"{section}.{key}" if section else key
        if isinstance(value, str) and _SCI.fullmatch(value):
            value = float(value)  # YAML 1.1 reads 2e-4 (no dot) as a string
        require(key in keys, name, value, did_you_mean(key, keys) + "one of the keys " + ", ".join(keys), source)
        require(keys[key].check(value), name, value, keys[key].allowed, source)
        out[key] = value
    if not defaults:
        return out
    return {key: out[key] if key in out else copy.deepcopy(spec.default) for key, spec in keys.items()}


__all__ = ["ConfigError", "Key", "check_section", "did_you_mean", "flatten_keys", "is_bool", "is_int", "is_num", "optional", "require"]
