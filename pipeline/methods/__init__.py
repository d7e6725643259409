"""Methods, one file each, looked up by name (`method: grip` in params.yaml).

Importing this package imports every module in it; each registers its method with `@register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from pipeline.methods.base import LossTerm, Method, register, registry

if TYPE_CHECKING:
    from pipeline.params import Params

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def method_names() -> tuple[str, ...]:
    return tuple(sorted(registry()))


def selection_rules() -> tuple[str, ...]:
    """Methods whose selection AiR can run on its fused posterior (`pseudolabel.selection`)."""
    return tuple(sorted(name for name, cls in registry().items() if cls.selection_rule))


def build_method(params: "Params", name: str | None = None) -> Method:
    """The method `params.method` (or `name`) configured by `params`."""
    name = name or params.method
    methods = registry()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(method_names())}")
    return methods[name](params)


__all__ = ["LossTerm", "Method", "build_method", "method_names", "register", "selection_rules"]
