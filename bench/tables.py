"""Markdown tables for the benchmarks' printed results."""

from __future__ import annotations


def print_table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """First column left-aligned, the rest right-aligned (numbers)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              + " |")
