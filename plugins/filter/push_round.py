# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: push_round
short_description: The next round of a push (scp_wave, scp_tsunami) from the hosts that verified the image
version_added: 0.1.0
description:
  - C(push_round) returns the first round of C(plan_wave) (O(method=scp_wave)) or C(plan_tsunami)
    (O(method=scp_tsunami)) of the collection's push library (C(_push)). C(playbooks/push.yml) replans
    after every round, so a host becomes a source only after its promotion (the verification against the
    signed index) succeeded, and a failed host is simply planned again.
  - Wave pairs are C({source, destination}); tsunami triples add C(chunk).
author:
  - vmcloud developers
options:
  _input:
    description: Hosts that hold the verified image (the sources).
    type: list
    elements: str
    required: true
  lackers:
    description: Hosts that lack it.
    type: list
    elements: str
    required: true
  method:
    description: The push method.
    type: str
    choices: [scp_wave, scp_tsunami]
    default: scp_wave
  chunks:
    description: Number of chunks (O(method=scp_tsunami)).
    type: int
    default: 1
  held:
    description: Chunks each lacker already holds, by host (O(method=scp_tsunami)).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Plan the next wave round
  ansible.builtin.set_fact:
    _round: "{{ ['catalogue01'] | vmcloud.fleet.push_round(['hv01', 'hv02', 'hv03']) }}"
"""

RETURN = r"""
_value:
  description: The pairs (or triples) of the next round; empty when nobody lacks the image.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError
from ansible_collections.vmcloud.fleet.plugins.module_utils._push import plan_tsunami, plan_wave


def push_round(holders, lackers, method="scp_wave", chunks=1, held=None):
    try:
        if method == "scp_wave":
            rounds = plan_wave(list(holders), list(lackers))
            return [{"source": src, "destination": dst} for src, dst in (rounds[0] if rounds else [])]
        if method == "scp_tsunami":
            rounds = plan_tsunami(int(chunks), list(holders), list(lackers), held=dict(held or {}))
            return [{"source": src, "destination": dst, "chunk": chunk}
                    for src, dst, chunk in (rounds[0] if rounds else [])]
    except VmcloudError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    raise AnsibleFilterError(f"option-invalid: push_round method {method!r} is not scp_wave or scp_tsunami")


class FilterModule:
    def filters(self):
        return {"push_round": push_round}
