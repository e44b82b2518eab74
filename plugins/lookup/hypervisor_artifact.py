# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: hypervisor_artifact
short_description: The hypervisor side of the collection as one file, built on the controller
version_added: 0.1.0
description:
  - Builds C(vmcloud-hypervisor-<collection version>.pyz), a Python zip application holding this collection's
    C(plugins/module_utils) and an entry point that runs C(imgdist) (C(python3 FILE imgdist ARGS)) and checks
    itself (C(python3 FILE --self-check)), and returns its path on the controller.
  - The file is reproducible (sorted entries, fixed timestamps and modes, stored uncompressed) and kept in
    O(cache_dir) under its own SHA-256, so it is rebuilt only when the library's content changes and the same
    sources give the same bytes on every controller; a C(copy) of it changes only when its content does.
  - The C(vmcloud.fleet.vmic_agent) role installs it as C(/usr/lib/vmcloud/vmcloud-hypervisor.pyz).
    C(make artifact) (C(tools/build-artifact)) builds the same file from a checkout.
author:
  - vmcloud team (@vmcloud)
options:
  cache_dir:
    description: Directory on the controller that holds the built artifacts (C(<sha256>/<file name>)).
    type: path
    default: ~/.cache/vmcloud.fleet/hypervisor-artifact
    env:
      - name: VMCLOUD_ARTIFACT_CACHE_DIR
"""

EXAMPLES = r"""
- name: Install the hypervisor artifact
  ansible.builtin.copy:
    src: "{{ lookup('vmcloud.fleet.hypervisor_artifact') }}"
    dest: /usr/lib/vmcloud/vmcloud-hypervisor.pyz
    mode: "0644"
    validate: /usr/bin/python3 -I %s --self-check
"""

RETURN = r"""
_raw:
  description: One element, the path of the built artifact on the controller.
  type: list
  elements: path
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.plugin_utils import _artifact


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("option-invalid: vmcloud.fleet.hypervisor_artifact takes no terms, "
                                     f"got {len(terms)}; call lookup('vmcloud.fleet.hypervisor_artifact')")
        self.set_options(var_options=variables, direct=kwargs)
        try:
            return [str(_artifact.cached(self.get_option("cache_dir")))]
        except VmcloudError as exc:
            raise AnsibleLookupError(str(exc)) from exc
