"""Reference helpers for JSON text, written independently of the gateway's splitters."""

from __future__ import annotations


def compact_reference(text: str) -> bytes:
    """JSON text without the whitespace outside strings (what the splitters store for JSON
    data), by a different route than theirs."""
    out = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch not in " \t\n\r":
            out.append(ch)
            in_string = ch == '"'
    return "".join(out).encode()


def typed(x: object) -> object:
    """``x`` with every scalar's type made part of it (1, 1.0 and True compare equal)."""
    if isinstance(x, dict):
        return ("dict", [(k, typed(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ("list", [typed(v) for v in x])
    if isinstance(x, float):
        return ("float", repr(x))
    return (type(x).__name__, x)
