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
