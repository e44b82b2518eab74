# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The third-party Python libraries a module needs, as its docs list them. Private to the collection.

Kept in step with module_utils/_requirements.py, which names the same Debian packages when a library
is missing (``missing_required_lib``). A module lists one fragment per library it imports.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
"""

    CRYPTOGRAPHY = r"""
options: {}
requirements:
  - cryptography (Debian package python3-cryptography; 38.0.4 on bookworm is enough)
"""

    YAML = r"""
options: {}
requirements:
  - PyYAML (Debian package python3-yaml)
"""

    FASTBENCODE = r"""
options: {}
requirements:
  - fastbencode (Debian package python3-fastbencode)
"""
