"""How one setting is declared and checked: `setting()` puts its doc and allowed values into the
dataclass field's metadata, and `Section` coerces types and checks bounds and choices from it when
a section is built (core/sections.py declares the sections, core/config.py composes them).

Why this shape: a typo in a string-keyed dict silently trains with a default; a field with its doc
and its bounds is checked where it is built and documents itself to the UI.
"""

from __future__ import annotations

import difflib
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .errors import FluxLabError


class ConfigError(FluxLabError, ValueError):
    """A setting has a bad value or name. `key` is the dotted name ("lora.rank") for UIs to highlight."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def setting(default: Any, doc: str, *, choices: tuple | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field whose doc and allowed values live in machine-readable metadata."""
    meta = {"doc": doc}
    for name, value in (("choices", choices), ("ge", ge), ("gt", gt), ("le", le), ("lt", lt)):
        if value is not None:
            meta[name] = value
    if isinstance(default, (list, dict)):
        raise TypeError("mutable defaults are not allowed in settings; use a tuple")
    return field(default=default, metadata=meta)


def nearest(word: str, pool: list[str]) -> str | None:
    """The valid name a user most likely meant: a prefix match ('bell' -> 'bell_shaped') or the
    closest spelling; None when nothing is reasonably close."""
    prefixed = [p for p in pool if p.startswith(word) or word.startswith(p)] if word else []
    if prefixed:
        return min(prefixed, key=lambda p: abs(len(p) - len(word)))
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.5)
    return close[0] if close else None


def _range_text(meta: dict) -> str:
    lo = f"[{meta['ge']}" if "ge" in meta else f"({meta['gt']}" if "gt" in meta else "(-inf"
    hi = f"{meta['le']}]" if "le" in meta else f"{meta['lt']})" if "lt" in meta else "inf)"
    return f"{lo}, {hi}"


@dataclass(frozen=True)
class Section:
    """Base of every settings section: type coercion, metadata-driven checks, then `_check()`."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            self._coerce(f.name, hints[f.name])
            self._check_bounds(f.name, f.metadata)
        self._check()

    def _check(self) -> None:
        """Checks that involve more than one field of this section (override)."""

    def _key(self, name: str) -> str:
        return f"{self.SECTION}.{name}"

    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(self._key(name), message)

    def _coerce(self, name: str, hint: Any) -> None:
        value = getattr(self, name)
        args = typing.get_args(hint)
        if type(None) in args:  # Optional[...]: None is allowed and resolved by _check()
            if value is None:
                return
            hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
        if origin is tuple:
            if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(hint)):
                self._fail(name, f"expected a list of {len(typing.get_args(hint))} numbers, got {value!r}")
            items = []
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    self._fail(name, f"expected numbers, got {value!r}")
                items.append(float(item))
            object.__setattr__(self, name, tuple(items))
            return
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(self, name, float(value))
            return
        ok = isinstance(value, hint) and not (hint in (int, float) and isinstance(value, bool))
        if not ok:
            self._fail(name, f"expected {hint.__name__}, got {value!r} ({type(value).__name__})")

    def _check_bounds(self, name: str, meta: Any) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if "choices" in meta and value not in meta["choices"]:
            close = nearest(str(value), [str(c) for c in meta["choices"]])
            hint = f" (did you mean {close!r}?)" if close else ""
            self._fail(name, f"{value!r} is not one of {list(meta['choices'])}{hint}")
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                self._fail(name, f"{value!r} is not a finite number; use a value in {_range_text(meta)}")
            bad = (("ge" in meta and v < meta["ge"]) or ("gt" in meta and v <= meta["gt"])
                   or ("le" in meta and v > meta["le"]) or ("lt" in meta and v >= meta["lt"]))
            if bad:
                self._fail(name, f"{value!r} is outside the allowed range {_range_text(meta)}")
