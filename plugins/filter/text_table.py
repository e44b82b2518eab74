# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: text_table
short_description: Lines of a plain-text table whose columns line up whatever the cells hold
version_added: 0.1.0
description:
  - Each column is as wide as its widest cell (a long image uuid or host name widens its column instead of
    pushing the rest of its line out of line), columns are two spaces apart, and no line ends in spaces.
  - A cell is shown as text on one line (line breaks become spaces, none is empty); a row shorter than the
    others leaves its last columns empty.
  - The tables of C(playbooks/report.yml) and C(playbooks/plan.yml); the logic is C(_text_table) in module_utils.
author:
  - vmcloud team (@vmcloud)
options:
  _input:
    description: The rows, the heading first; each row a list of cells.
    type: list
    elements: list
    required: true
  right:
    description: The columns (0-based) aligned to the right, such as byte counts; the others are aligned left.
    type: list
    elements: int
    default: []
"""

EXAMPLES = r"""
- name: Show hosts and their images as a table
  ansible.builtin.debug:
    msg: "{{ [['host', 'image', 'bytes'], ['hv1', 'alma9', 21474836480]] | vmcloud.fleet.text_table(right=[2]) }}"
"""

RETURN = r"""
_value:
  description: The table's lines, the heading's first.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.module_utils._text_table import text_table


def _text_table(rows, right=()):
    if not isinstance(rows, (list, tuple)) or not all(isinstance(row, (list, tuple)) for row in rows):
        raise AnsibleFilterError("text_table: the input must be a list of rows, each a list of cells")
    if not isinstance(right, (list, tuple)) or not all(isinstance(column, int) and not isinstance(column, bool)
                                                       for column in right):
        raise AnsibleFilterError("text_table: right must be a list of column numbers (0-based)")
    return text_table(rows, right)


class FilterModule:
    def filters(self):
        return {"text_table": _text_table}
