"""Text that is safe inside HTML, SVG and XML: escaped, and free of characters XML forbids."""

from __future__ import annotations

import html
import re

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry replaced (an adapter's error may hold any)."""
    return _NOT_XML.sub("\ufffd", text)


def esc(value: object) -> str:
    """Escaped for element text and double- or single-quoted attribute values."""
    return html.escape(clean(str(value)), quote=True)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
