"""JSON Schema ``pattern`` with the regular-expression semantics JSON Schema prescribes (ECMA-262).

``jsonschema`` runs a pattern through Python's ``re``, whose classes differ from ECMA-262 for
strings: Python's ``\\s`` also matches U+001C–U+001F and U+0085 but not U+FEFF, and ``\\d``/``\\w``
match every Unicode digit and letter where ECMA-262 matches ASCII only. Clients, generators and
Schemathesis follow ECMA-262, so a name like ``"\\x85"`` matched ``\\S`` for them and was refused
here. :func:`pattern` replaces the keyword: ``\\d``/``\\w``/``\\b`` are made ASCII (``re.ASCII``)
and ``\\s``/``\\S`` are spelled out as ECMA-262's white-space and line-terminator set.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from jsonschema import ValidationError

# ECMA-262 WhiteSpace and LineTerminator code points (Unicode Zs included).
_SPACE = "\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


@cache
def compile_pattern(source: str) -> re.Pattern[str]:
    """``source`` compiled so that Python's ``re`` matches what ECMA-262 would."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source):
            escape = source[i + 1]
            if escape == "s":
                out.append(_SPACE if in_class else f"[{_SPACE}]")
            elif escape == "S" and not in_class:
                out.append(f"[^{_SPACE}]")
            else:
                out.append(source[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return re.compile("".join(out), re.ASCII)


def pattern(validator: Any, patrn: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """The ``pattern`` keyword for ``jsonschema.validators.extend``."""
    if validator.is_type(instance, "string") and not compile_pattern(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")
