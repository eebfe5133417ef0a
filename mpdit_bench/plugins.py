"""A researcher's own components, registered without forking the suite.

A plugin is a Python module whose import registers components with ``@register(kind, name)`` (see
``mpdit_bench.registry``). Three ways to load them:

- installed packages that declare an entry point in the group ``mpdit_bench.plugins``, loaded once per
  process, before any name is looked up;
- ``plugins: [my_lab.parts, ./parts.py]`` in an experiment or a run config (module names, or paths of
  ``.py`` files relative to the current directory);
- ``--plugin MODULE`` on the commands.

Run configs and checkpoints keep the list, so every phase of a run, in the sweep worker or as its own
command, loads the same plugins before it builds the model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from mpdit_bench.validation import ConfigError

ENTRY_POINT_GROUP = "mpdit_bench.plugins"
_entry_points_loaded = False


def load_entry_points() -> list[str]:
    """Import every installed plugin of the entry-point group (once per process); their names."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    loaded = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as err:  # a broken installed plugin is named, not a traceback from deep inside
            raise ConfigError(f"entry point {ENTRY_POINT_GROUP}:{entry.name}", entry.value,
                              f"an importable module that registers components ({type(err).__name__}: {err})") from None
        loaded.append(entry.name)
    return loaded


def _import_file(path: Path) -> Any:
    """Import a .py file under a name derived from its resolved path (the same file is imported once)."""
    resolved = path.resolve()
    name = f"mpdit_bench_plugin_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def check_list(value: Any, key: str = "plugins", source: str | None = None) -> list[str]:
    """A plugins value: a list of module names or .py paths."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, value, "a list of module names or .py file paths, e.g. [my_lab.parts, ./parts.py]",
                          source)
    return list(value)


def resolved(plugins: Iterable[str]) -> list[str]:
    """``plugins`` with each .py path made absolute (module names unchanged), so that a run config or a
    checkpoint that keeps the list finds the files from any directory."""
    return [str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins]


def merged(*lists: Iterable[str]) -> list[str]:
    """The plugins of several lists, each once, in order of first appearance."""
    return list(dict.fromkeys(p for plugins in lists for p in plugins))


def from_file_and_flags(value: Any, flags: Iterable[str], source: str | None = None) -> list[str]:
    """The plugins a file's ``plugins:`` and the command's ``--plugin`` name: checked and imported (the file's
    first), each once, .py paths made absolute: what every run config of the file keeps."""
    own = check_list(value, "plugins", source)
    load(own, "plugins", source)  # before any model override names their components
    load(flags, "--plugin", source)
    return merged(resolved(own), resolved(flags))


def load(plugins: Iterable[str], key: str = "plugins", source: str | None = None) -> None:
    """Import the installed plugins and then ``plugins`` (module names or .py paths)."""
    load_entry_points()
    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                path = Path(plugin)
                if not path.is_file():
                    raise FileNotFoundError(f"no such file (relative to {Path.cwd()})")
                _import_file(path)
            else:
                importlib.import_module(plugin)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(key, plugin, "an importable module name or .py file that registers components "
                              f"({type(err).__name__}: {err})", source) from None


__all__ = ["ENTRY_POINT_GROUP", "check_list", "load", "load_entry_points", "merged", "resolved"]
