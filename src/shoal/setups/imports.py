"""``module:attribute`` specs: import the object, or say exactly why not."""

from __future__ import annotations

import importlib
import re
from typing import Any

from shoal.setups.kind import SpecProblem

IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def import_object(spec: str) -> Any | None:
    """The object ``module:attribute`` names; None when ``spec`` is not written that way."""
    if IMPORT_PATH.fullmatch(spec) is None:
        return None
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import runs user code: any error is the user's to fix
        # `kind:path` with an unknown kind reads like `module:attribute`; say both.
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == module_name
        what = (
            f"unknown setup kind {module_name!r}, and no module of that name can be imported"
            if missing and "." not in module_name
            else f"module {module_name!r} cannot be imported"
        )
        raise SpecProblem(
            f"{what} ({type(exc).__name__}: {exc}); make the module importable "
            "(e.g. pytest's `pythonpath` ini option) or fix the spec"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise SpecProblem(f"{module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target
