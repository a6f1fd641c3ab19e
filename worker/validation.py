"""Turn pydantic errors into one-line messages a person can act on.

Pydantic's own messages are precise but name locations as tuples and never
suggest anything; users of a CLI or a results queue need
``options.tgas: unknown field (did you mean 'tags'?)``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def named_tables(
    data: Mapping[str, Any], section: str, noun: str, name_pattern: str
) -> tuple[dict[str, Any], list[str]]:
    """The ``[section.NAME]`` tables of a config file, and a problem for anything else."""
    problems = [
        f"{key}: unknown top-level key{did_you_mean(key, [section])}"
        for key in data
        if key != section
    ]
    tables = data.get(section, {})
    if not isinstance(tables, dict):
        problems.append(f"{section}: expected a table of {section}")
        tables = {}
    named = {}
    for name, raw in tables.items():
        if not re.match(name_pattern, name):
            problems.append(f"{section}.{name}: {noun} names match {name_pattern}")
        else:
            named[name] = raw
    return named, problems


def dotted(loc: Iterable[int | str]) -> str:
    """``('variables', 'a', 0)`` -> ``variables.a[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(job)"


def describe(
    exc: ValidationError,
    known_fields: Iterable[str] = (),
    prefix: str = "",
    nested: Mapping[str, Iterable[str]] | None = None,
) -> list[str]:
    """One message per pydantic error, unknown fields with a suggestion.

    ``nested`` names the fields of a nested model by its field (``message``), so
    an unknown field in there is compared with the right names.
    """
    known = list(known_fields)
    messages = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        where = dotted((prefix, *loc) if prefix else loc)
        if err["type"] == "extra_forbidden":
            choices = known
            if nested and len(loc) == 2 and str(loc[0]) in nested:
                choices = list(nested[str(loc[0])])
            hint = did_you_mean(str(loc[-1]), choices) if loc else ""
            messages.append(f"{where}: unknown field{hint}")
        elif err["type"] == "missing":
            messages.append(f"{where}: required field is missing")
        else:
            messages.append(f"{where}: {err['msg']}")
    return messages
