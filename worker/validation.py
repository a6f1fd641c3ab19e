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


_SECRET_FIELD = re.compile(r"password|secret|token|key", re.IGNORECASE)
_QUOTED = re.compile(r"'([^']*)'")


def _given(loc: tuple[int | str, ...], value: Any) -> str:
    """``, not 'x'`` for a plain value; nothing for a table, a list or a secret's field."""
    field = str(loc[-1]) if loc else ""
    if _SECRET_FIELD.search(field) or isinstance(value, dict | list) or value is None:
        return ""
    return f", not {value!r}"


def _untagged(loc: tuple[int | str, ...], tags: Mapping[str, set[str]]) -> tuple[int | str, ...]:
    return tuple(
        part
        for i, part in enumerate(loc)
        if not (i and str(loc[i - 1]) in tags and str(part) in tags[str(loc[i - 1])])
    )


def describe_config(
    exc: ValidationError,
    known_fields: Iterable[str] = (),
    prefix: str = "",
    *,
    choices: Mapping[str, Iterable[str]] | None = None,
    formats: Mapping[str, str] | None = None,
    unions: Mapping[str, Iterable[str]] | None = None,
    env_prefix: str | None = None,
) -> list[str]:
    """One sentence per error of a configuration file or of the environment.

    Like `describe`, in our own words instead of pydantic's: ``auth.type:
    unknown type 'oauth' (did you mean 'oauth2'?); one of none, basic,
    bearer, oauth2`` rather than ``Input tag 'oauth' found using 'type' does
    not match any of the expected tags``. ``choices`` names the allowed
    values of a discriminator (e.g. ``{"type": [...]}``) for when it is
    missing; ``formats`` describes what a field's pattern means (e.g.
    ``{"rate_limit": "a rate like '50/s'"}``); ``unions`` the tags pydantic
    puts into the location of a tagged union's field (``auth.basic.password``
    is shown as ``auth.password``). With ``env_prefix`` a field
    is named as its variable, ``STARTPROC_BROKER_URL``. Values of fields
    whose name suggests a secret are never repeated.
    """
    known = list(known_fields)
    choices = choices or {}
    formats = formats or {}
    messages = []
    tags = {name: set(values) for name, values in (unions or {}).items()}
    for err in exc.errors(include_url=False):
        loc = _untagged(tuple(err["loc"]), tags)
        kind = err["type"]
        ctx = err.get("ctx") or {}
        value = err.get("input")
        if env_prefix is not None:
            where = f"{env_prefix}{str(loc[0]).upper()}" if loc else "settings"
        else:
            where = dotted((prefix, *loc) if prefix else loc)
        field = str(loc[-1]) if loc else ""
        if kind == "extra_forbidden":
            message = f"unknown field{did_you_mean(field, known)}"
        elif kind == "missing":
            message = "required field is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            key = str(ctx.get("discriminator", "type")).strip("'")
            allowed = list(choices.get(key, _QUOTED.findall(str(ctx.get("expected_tags", "")))))
            where = f"{where}.{key}"
            if kind == "union_tag_not_found":
                message = f"required field is missing; one of {', '.join(allowed)}"
            else:
                tag = str(ctx.get("tag"))
                message = f"unknown {key} {tag!r}{did_you_mean(tag, allowed)}; one of " + ", ".join(
                    allowed
                )
        elif kind == "literal_error":
            allowed = _QUOTED.findall(str(ctx.get("expected", "")))
            message = (
                f"{value!r} is not one of {', '.join(allowed)}{did_you_mean(str(value), allowed)}"
            )
        elif kind in ("value_error", "assertion_error"):
            message = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
        elif kind == "string_pattern_mismatch":
            form = formats.get(field) or f"text matching {ctx.get('pattern')}"
            message = f"expected {form}{_given(loc, value)}"
        else:
            text = str(err["msg"]).split(", unable to")[0].split(", got")[0]
            message = text.replace("Input should be", "must be", 1) + _given(loc, value)
        if message.startswith(where):
            messages.append(message)
        else:
            messages.append(f"{where}: {message}")
    return messages
