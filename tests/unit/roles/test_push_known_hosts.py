"""roles/hypervisor/templates/push_known_hosts.j2: the senders' known_hosts from gathered host keys."""

from __future__ import annotations

import os

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TEMPLATE = os.path.join(ROOT, "roles", "hypervisor", "templates", "push_known_hosts.j2")


def render(peers: list[str]) -> str:
    hostvars = {
        host: {"ansible_host": f"10.0.0.{i}", "ansible_ssh_host_key_ed25519_public": f"KEY{i}",
               "ansible_ssh_host_key_ed25519_public_keytype": "ssh-ed25519"}
        for i, host in enumerate(["hv01", "hv02", "hv03"], start=1)
    }  # fmt: skip
    with open(TEMPLATE) as handle:
        source = handle.read()
    variables = {"ansible_managed": "managed", "hostvars": hostvars, "_hypervisor_push_peers": peers}
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(source))


def test_every_peer_has_its_line_with_name_address_type_and_key():
    lines = [line for line in render(["hv01", "hv02"]).splitlines() if not line.startswith("#")]
    assert lines == ["hv01,10.0.0.1 ssh-ed25519 KEY1", "hv02,10.0.0.2 ssh-ed25519 KEY2"]


def test_the_file_does_not_depend_on_the_order_the_peers_were_grouped_in():
    # playbooks/push.yml's origin play gets its peers from a group_by, whose order follows the order
    # the hosts' results came back in: the file must not change with it (molecule methods' idempotence).
    assert render(["hv03", "hv01", "hv02"]) == render(["hv01", "hv02", "hv03"])


def test_a_peer_named_twice_is_one_line():
    assert render(["hv01", "hv01"]) == render(["hv01"])
