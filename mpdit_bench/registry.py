"""A timm-style registry of swappable components.

Each component kind (``upsample``, ``time_embedder``, ``class_embedder``, ``modulation`` ...) maps names
to classes. A component registers itself with ``@register(kind, name)`` when its module is imported;
importing ``mpdit_bench.components`` imports every component module, so the lookups below see them all.
This module imports nothing of the suite: components sit above it.
"""

from __future__ import annotations

from typing import Any, Callable

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {}


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


def kinds() -> list[str]:
    return sorted(_REGISTRY)


def names(kind: str) -> list[str]:
    """Registered names of one kind, sorted."""
    if kind not in _REGISTRY:
        hint = "" if _REGISTRY else " (none yet: importing mpdit_bench.components registers the suite's)"
        raise RegistryError(f"unknown component kind {kind!r}; known kinds: {', '.join(kinds())}{hint}")
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> Callable[..., Any]:
    allowed = names(kind)
    if name not in allowed:
        raise RegistryError(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}")
    return _REGISTRY[kind][name]


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Build the component registered as ``name`` of ``kind``."""
    return get(kind, name)(**kwargs)
