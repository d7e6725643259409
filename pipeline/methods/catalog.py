"""Every method, looked up by name (`method: grip` in params.yaml): importing this module imports each
module of the package, and each registers its method with `@register` (`pipeline.methods.base`).

Adding a method means adding a file. Only the stages that build a method (`check`, `pseudolabel`,
`train`) import this catalog, so a method's file is a dependency of those stages alone.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import PipelineError
from pipeline.methods.base import LossTerm, Method, register, registry

if TYPE_CHECKING:
    from pipeline.config.params import Params

_PACKAGE = Path(__file__).parent
for _module in pkgutil.iter_modules([str(_PACKAGE)]):
    if _module.name not in ("base", "catalog"):
        importlib.import_module(f"pipeline.methods.{_module.name}")


def method_names() -> tuple[str, ...]:
    return tuple(sorted(registry()))


def selection_rules() -> tuple[str, ...]:
    """Methods whose selection AiR can run on its fused posterior (`pseudolabel.selection`)."""
    return tuple(sorted(name for name, cls in registry().items() if cls.selection_rule))


def method_problems(params: "Params") -> list[str]:
    """What the registry refuses in `params`, one `key: message` line each: an unknown method or
    selection rule, a method without a meaning under the paradigm, or one that votes with synthetic
    images while none are generated. The schema (`pipeline.config.params`) checks everything else; it does not
    import the methods, so loading params costs no stage a dependency on every method file."""
    methods = registry()
    if params.method not in methods:
        return [f"method: unknown method {params.method!r}; choose one of: {', '.join(method_names())}"]
    problems = []
    if params.pseudolabel.selection not in selection_rules():
        problems.append(f"pseudolabel.selection: unknown selection {params.pseudolabel.selection!r}; "
                        f"choose one of: {', '.join(selection_rules())}")
    method = methods[params.method]
    if params.paradigm not in method.paradigms:
        fitting = sorted(name for name, cls in methods.items() if params.paradigm in cls.paradigms)
        problems.append(f"(top level): method {params.method!r} does not run under paradigm {params.paradigm!r}; "
                        f"methods that do: {', '.join(fitting)}")
    if method.needs_prototypes and params.generate.images_per_class == 0:
        problems.append(f"(top level): method {params.method!r} builds its auxiliary classifier from synthetic "
                        "images, but generate.images_per_class is 0; set it to 16 or more")
    return problems


def check_method(params: "Params", source: str = "params") -> "Params":
    """`params`, or a one-error-per-line PipelineError in the schema's format."""
    problems = method_problems(params)
    if problems:
        raise PipelineError("\n".join([f"{source} is not valid:"] + [f"  {line}" for line in problems]))
    return params


def build_method(params: "Params", name: str | None = None) -> Method:
    """The method `params.method` (or `name`) configured by `params`, after `check_method`."""
    if name is None:
        check_method(params)
    name = name or params.method
    methods = registry()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(method_names())}")
    return methods[name](params)


__all__ = ["LossTerm", "Method", "build_method", "check_method", "method_problems", "method_names", "register", "selection_rules"]
