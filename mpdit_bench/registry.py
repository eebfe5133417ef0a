"""A timm-style registry of swappable components.

Each component kind (``upsample``, ``time_embedder``, ``class_embedder``, ``modulation`` ...) maps names
to classes. A component registers itself with ``@register(kind, name)``; every module placed in
``mpdit_bench/components/`` is imported on first use, so adding a component means writing one module.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {}
_discovered = False


class RegistryError(ValueError):
    """An unknown kind or component name."""


def register(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator: make ``cls`` creatable as ``create(kind, name, ...)``."""

    def add(cls: Callable[..., Any]) -> Callable[..., Any]:
        members = _REGISTRY.setdefault(kind, {})
        if name in members and members[name] is not cls:
            raise RegistryError(f"{kind} {name!r} is registered twice ({members[name]} and {cls})")
        members[name] = cls
        cls.registry_kind, cls.registry_name = kind, name
        return cls

    return add


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    from mpdit_bench import components

    for info in pkgutil.iter_modules(components.__path__):
        importlib.import_module(f"{components.__name__}.{info.name}")


def kinds() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def names(kind: str) -> list[str]:
    """Registered names of one kind, sorted."""
    _discover()
    if kind not in _REGISTRY:
        raise RegistryError(f"unknown component kind {kind!r}; known kinds: {', '.join(kinds())}")
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> Callable[..., Any]:
    allowed = names(kind)
    if name not in allowed:
        raise RegistryError(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}")
    return _REGISTRY[kind][name]


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Build the component registered as ``name`` of ``kind``."""
    return get(kind, name)(**kwargs)
