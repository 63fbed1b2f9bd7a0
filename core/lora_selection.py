"""The words a LoRA's layer selection is written in: the target presets' names and the grammar of
a block selection (`double:0-9,single:20-37`). Settings check them (core/sections.py); which linears
they pick is core/model/lora_targets.py's."""

import re
from typing import Mapping

TARGET_PRESETS = ("attention", "all", "mmdit", "context")
SECTIONS = ("double", "single")


def parse_blocks(selection, setting: str = "blocks") -> dict:
    """`"double:0-9,single:20-37"` or `{"double": [0, 1], "single": "3-5"}` -> {section: frozenset}.

    Grammar: comma-separated tokens `section:range` or `range`, where a bare range continues the
    previous section and a range is `n` or `a-b` (inclusive). Empty -> {} (no restriction).
    """
    if selection is None or selection == "":
        return {}
    if isinstance(selection, Mapping):
        out = {}
        for section, indices in selection.items():
            if section not in SECTIONS:
                raise ValueError(f"{setting}: unknown section {section!r}; use one of {SECTIONS}")
            text = indices if isinstance(indices, str) else ",".join(str(i) for i in indices)
            out[section] = parse_blocks(f"{section}:{text}", setting)[section] if text else frozenset()
        return out
    if not isinstance(selection, str):
        raise ValueError(f"{setting}: expected a string like 'double:0-9,single:20-37' or a dict, got {selection!r}")
    out, section = {}, None
    for raw in selection.split(","):
        token = raw.strip()
        if ":" in token:
            section, _, token = (part.strip() for part in token.partition(":"))
            if section not in SECTIONS:
                raise ValueError(f"{setting}: unknown section {section!r} in {raw.strip()!r}; use 'double:' or 'single:'")
        if section is None:
            raise ValueError(f"{setting}: token {raw.strip()!r} names no section; start with 'double:' or 'single:'")
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", token)
        if not match:
            raise ValueError(f"{setting}: bad token {raw.strip()!r} in {selection!r}; expected 'n' or 'a-b', e.g. 'double:0-9,single:20-37'")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise ValueError(f"{setting}: range {raw.strip()!r} runs backwards; write '{last}-{first}'")
        out[section] = out.get(section, frozenset()) | frozenset(range(first, last + 1))
    return out
