"""How commands print: JSON for machines, a rich console for people."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def print_json(obj: object) -> None:
    from nodetune.probes.serde import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(obj), indent=1) + "\n")


def term_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120


def console() -> Any:
    from rich.console import Console

    return Console(emoji=False, highlight=False, soft_wrap=False, width=max(100, min(200, term_width())))


def escape(text: str) -> str:
    """A node's string for a rich console: control characters written out, markup made literal."""
    from rich.markup import escape as markup_escape

    from nodetune.probes.host import inert as safe

    return markup_escape(safe(text))
