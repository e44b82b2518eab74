#!/usr/bin/python
# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_state_info
short_description: Look, in one round trip, at the paths, users, groups, units and packages a role keeps
version_added: 0.1.0
description:
  - The first task of each vmcloud role that converges a host. It reports, in one round trip, what the host has
    of everything the role keeps there; the role then runs a write task only where the answer differs from what
    it keeps. On a run with nothing to change, a role costs one round trip instead of one or two per task.
  - Paths are described as M(ansible.builtin.find) describes them and keyed by path; symlinks are described,
    never followed. Nothing is written.
author:
  - vmcloud team (@vmcloud)
extends_documentation_fragment:
  - vmcloud.fleet._attributes
  - vmcloud.fleet._attributes.INFO_MODULE
options:
  paths:
    description: Paths to describe (each path itself; a directory's contents are not listed).
    type: list
    elements: path
    default: []
  trees:
    description: Directories to describe with everything under them, down to O(tree_depth) levels.
    type: list
    elements: path
    default: []
  tree_depth:
    description: How many levels under each of O(trees) are described (1 is a directory's own entries).
    type: int
    default: 2
  checksum:
    description: Whether regular files get their SHA-256 as C(checksum) (what a role compares content on).
    type: bool
    default: true
  users:
    description: User names to look up.
    type: list
    elements: str
    default: []
  groups:
    description: Group names to look up.
    type: list
    elements: str
    default: []
  units:
    description: systemd units to ask about (one C(systemctl show) for all).
    type: list
    elements: str
    default: []
  packages:
    description: Debian packages whose dpkg status to read (dpkg's own record, not apt's cache).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Look at everything the seeder keeps (one round trip)
  vmcloud.fleet.host_state_info:
    paths: [/etc/vmcloud, /etc/vmcloud/seeder.json, /etc/systemd/system/vmcloud-seeder.service]
    users: [vmcloud-seeder]
    groups: [vmcloud-seeder]
    units: [vmcloud-seeder.service]
    packages: [python3-libtorrent]
  register: seeder_look

- name: Rewrite the configuration only when its content or owner differ
  ansible.builtin.template:
    src: seeder.json.j2
    dest: /etc/vmcloud/seeder.json
    owner: root
    group: vmcloud-seeder
    mode: "0640"
  when: >-
    seeder_look.files['/etc/vmcloud/seeder.json'].checksum | default('')
    != lookup('ansible.builtin.template', 'seeder.json.j2') | hash('sha256')
"""

RETURN = r"""
files:
  description: Each path found (of O(paths), and of O(trees) with what is under them), keyed by path. A path
    that does not exist is absent.
  returned: always
  type: dict
  contains:
    path:
      description: The path.
      type: str
    mode:
      description: Permission bits as four octal digits.
      type: str
      sample: "0755"
    pw_name:
      description: Owner's name (the uid as text when it has none).
      type: str
    gr_name:
      description: Group's name (the gid as text when it has none).
      type: str
    uid:
      description: Owner's uid.
      type: int
    gid:
      description: Group's gid.
      type: int
    size:
      description: Size in bytes.
      type: int
    isdir:
      description: A directory.
      type: bool
    isreg:
      description: A regular file.
      type: bool
    islnk:
      description: A symlink (not followed).
      type: bool
    checksum:
      description: SHA-256 of a regular file, with O(checksum=true).
      type: str
  sample: {"/etc/vmcloud": {path: /etc/vmcloud, mode: "0755", pw_name: root, gr_name: root, isdir: true}}
users:
  description: Each user's passwd entry split on C(:) as C(getent passwd) prints it; an empty list when there is
    none.
  returned: always
  type: dict
  sample:
    vmcloud-seeder: [vmcloud-seeder, x, "998", "998", vmcloud seeder, /var/lib/vmcloud-seeder, /usr/sbin/nologin]
groups:
  description: Each group's entry split on C(:) as C(getent group) prints it; an empty list when there is none.
  returned: always
  type: dict
  sample: {vmcloud-seeder: [vmcloud-seeder, x, "998", ""]}
units:
  description: Each unit's C(enabled) (as C(systemctl is-enabled) says) and C(active) (as C(systemctl is-active)
    says); both empty for a unit systemd does not know, or a host without systemd.
  returned: always
  type: dict
  sample: {vmcloud-seeder.service: {enabled: enabled, active: active}}
packages:
  description: Each package's dpkg status (C(installed), C(config-files), ...); empty when dpkg does not know it.
  returned: always
  type: dict
  sample: {python3-libtorrent: installed}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._host_state import look


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", default=[]),
            trees=dict(type="list", elements="path", default=[]),
            tree_depth=dict(type="int", default=2),
            checksum=dict(type="bool", default=True),
            users=dict(type="list", elements="str", default=[]),
            groups=dict(type="list", elements="str", default=[]),
            units=dict(type="list", elements="str", default=[]),
            packages=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        found = look(paths=params["paths"], trees=params["trees"], tree_depth=params["tree_depth"],
                     checksum=params["checksum"], user_names=params["users"], group_names=params["groups"],
                     unit_names=params["units"], package_names=params["packages"])
    except (VmcloudError, OSError) as exc:
        module.fail_json(msg=str(exc), rule=getattr(exc, "rule", "host-look-failed"))
    module.exit_json(changed=False, **found)


if __name__ == "__main__":
    main()
