"""What a human-readable command draws (trees, tables, lines of styled text), drawn by rich or,
where rich would draw plain text, by `draw_plain` without importing rich (rich alone is a bare
interpreter's start-up).

`draw_plain` writes exactly what rich writes on a console that draws no styles, for the layouts it
can be sure of: ASCII text that fits the width unwrapped. Anything else returns None and the
caller draws with rich (tests/cli/test_cli_topo.py compares the two)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from rich.console import Console

Span = tuple[str, str]  # literal text (never markup), rich style ("" for none)


class Line(NamedTuple):
    spans: tuple[Span, ...]


class Tree:
    """A label and the subtrees under it, drawn with rich's tree guides."""

    def __init__(self, *spans: Span) -> None:
        self.spans = spans
        self.children: list[Tree] = []

    def add(self, *spans: Span) -> Tree:
        """A child of this node (returned, to add its own children)."""
        child = Tree(*spans)
        self.children.append(child)
        return child


class Column(NamedTuple):
    header: str
    justify: str = "left"  # or "center"


class Table(NamedTuple):
    """A table with a header row, rich's default box (heavy head) and a title on its left."""

    title: str
    columns: list[Column]
    rows: list[list[str]]


Block = Line | Tree | Table


def _text(spans: tuple[Span, ...]) -> str:
    return "".join(text for text, _ in spans)


def _safe(text: str) -> bool:
    """Text rich lays out as it stands: ASCII, printable, no run of spaces or space at an end."""
    return text.isascii() and text.isprintable() and "  " not in text.strip() and text == text.strip()


def _tree_lines(tree: Tree, prefix: str, out: list[str]) -> bool:
    for i, child in enumerate(tree.children):
        last = i == len(tree.children) - 1
        label = _text(child.spans)
        if not label.isascii() or not label.isprintable() or label != label.rstrip():
            return False
        out.append(prefix + ("└── " if last else "├── ") + label)
        if not _tree_lines(child, prefix + ("    " if last else "│   "), out):
            return False
    return True


def _cell(text: str, width: int, justify: str) -> str:
    room = width - 2
    if justify == "center":
        left = (room - len(text)) // 2
        text = " " * left + text + " " * (room - len(text) - left)
    else:
        text = text.ljust(room)
    return f" {text} "


def _table_lines(t: Table, width: int, out: list[str]) -> bool:
    cells = [[c.header for c in t.columns], *t.rows]
    if any(len(row) != len(t.columns) or not all(c == "" or _safe(c) for c in row) for row in cells):
        return False
    widths = [max(len(row[i]) for row in cells) + 2 for i in range(len(t.columns))]
    total = sum(widths) + len(widths) + 1
    if total > width or len(t.title) > total or (t.title and not _safe(t.title)):
        return False  # rich would shrink columns or wrap the title
    if t.title:
        out.append(t.title)
    out.append("┏" + "┳".join("━" * w for w in widths) + "┓")
    out.append("┃" + "┃".join(_cell(h, w, c.justify)
                              for h, w, c in zip(cells[0], widths, t.columns, strict=True)) + "┃")
    out.append("┡" + "╇".join("━" * w for w in widths) + "┩")
    for row in t.rows:
        out.append("│" + "│".join(_cell(x, w, c.justify) for x, w, c in zip(row, widths, t.columns, strict=True)) + "│")
    out.append("└" + "┴".join("─" * w for w in widths) + "┘")
    return True


def draw_plain(blocks: list[Block], width: int) -> str | None:
    """The text rich draws for `blocks` on an unstyled console `width` columns wide with soft
    wrapping (output that is not a terminal); None where this cannot be sure of it."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Line):
            text = _text(b.spans)
            if not text.isascii() or not text.isprintable() or text != text.rstrip():
                return None
            out.append(text)
        elif isinstance(b, Tree):
            label = _text(b.spans)
            if not label.isascii() or not label.isprintable() or label != label.rstrip():
                return None
            out.append(label)
            if not _tree_lines(b, "", out):
                return None
        elif not _table_lines(b, width, out):
            return None
    return "".join(line + "\n" for line in out)


def _rich_text(spans: tuple[Span, ...]) -> Any:
    from rich.text import Text

    return Text.assemble(*spans)


def draw_rich(blocks: list[Block], console: Console) -> None:
    """Draw `blocks` on a rich console."""
    from rich.table import Table as RichTable
    from rich.text import Text
    from rich.tree import Tree as RichTree

    def tree(node: Tree, into: Any) -> None:
        for child in node.children:
            tree(child, into.add(_rich_text(child.spans)))

    for b in blocks:
        if isinstance(b, Line):
            console.print(_rich_text(b.spans))
        elif isinstance(b, Tree):
            root = RichTree(_rich_text(b.spans))
            tree(b, root)
            console.print(root)
        else:
            t = RichTable(title=b.title or None, title_justify="left")
            for c in b.columns:
                t.add_column(Text(c.header), justify=c.justify)  # type: ignore[arg-type]
            for row in b.rows:
                t.add_row(*(Text(x) for x in row))
            console.print(t)
