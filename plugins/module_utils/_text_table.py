# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain-text tables whose columns line up whatever the cells hold (a long image uuid, a long host name).

Private to the collection; not a public API. The playbooks' text tables (report.yml, plan.yml) use it
through the filter vmcloud.fleet.text_table.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Sequence

GAP = "  "  # between two columns


def _cell(value: Any) -> str:
    """A cell on one line: None is empty, line breaks become spaces."""
    return "" if value is None else " ".join(str(value).splitlines())


def text_table(rows: Sequence[Sequence[Any]], right: Iterable[int] = ()) -> List[str]:
    """The lines of ``rows`` (the heading first, if any) with each column as wide as its widest cell,
    columns ``right`` (0-based) right-aligned, the others left-aligned; a short row leaves its last
    columns empty, and no line ends in spaces."""
    cells = [[_cell(value) for value in row] for row in rows]
    right_aligned = set(right)
    widths: List[int] = []
    for row in cells:
        for column, text in enumerate(row):
            if column == len(widths):
                widths.append(0)
            widths[column] = max(widths[column], len(text))
    lines = []
    for row in cells:
        padded = [text.rjust(widths[column]) if column in right_aligned else text.ljust(widths[column])
                  for column, text in enumerate(row)]
        lines.append(GAP.join(padded).rstrip())
    return lines
