# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: push_round
short_description: The next round of a wave push (scp_wave), planned from what the hosts hold now
version_added: 0.1.0
description:
  - Filters of C(playbooks/push.yml) over the collection's push library (C(_push)), which holds the logic
    (unit-tested there). C(push_state(method, holders, lackers, size, chunk_size)) starts a push;
    C(push_round(state)) returns the pairs of a wave's next round (C(plan_wave), where each holder sends to one lacker);
    C(push_advance(state, pairs, delivered, verified)) returns the state after the round. A scp_tsunami push has
    no rounds (it is pipelined, see C(push_queues) and C(push_record)); its state is refused here (C(option-invalid)).
  - A wave receiver becomes a source only when C(verified) (its store holds the image, so the promotion checked
    it against the signed index); a failed push leaves the host a lacker, planned again next round.
author:
  - vmcloud team (@vmcloud)
options:
  _input:
    description: The push state (from C(push_state) or C(push_advance)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Plan the next round
  ansible.builtin.set_fact:
    _pairs: "{{ _state | vmcloud.fleet.push_round }}"
"""

RETURN = r"""
_value:
  description: The pairs of the next round (C(source), C(destination)); empty when done.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import VmcloudError


def _push():
    """The push library, imported where a filter runs, not when the plugin loads: Ansible loads every filter
    file of a collection in each task's worker, whenever a task names any vmcloud.fleet filter."""
    from ansible_collections.vmcloud.fleet.plugins.module_utils import _push as push

    return push


def _wrapped(function):
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except VmcloudError as exc:
            raise AnsibleFilterError(str(exc)) from exc
    return call


def _state(method, holders, lackers, size, chunk_size=0):
    return _push().push_state(method, list(holders), list(lackers), int(size), int(chunk_size))


def _advance(state, pairs, delivered, verified):
    return _push().advance(dict(state), list(pairs), dict(delivered), dict(verified))


def _queues(state, addresses=None):
    return _push().pass_queues(dict(state), dict(addresses or {}))


def _record(state, held, dead=()):
    return _push().record_pass(dict(state), dict(held), list(dead))


class FilterModule:
    def filters(self):
        return {
            "push_state": _wrapped(_state),
            "push_round": _wrapped(lambda state: _push().next_round(dict(state))),
            "push_advance": _wrapped(_advance),
            "push_queues": _wrapped(_queues),
            "push_record": _wrapped(_record),
        }
