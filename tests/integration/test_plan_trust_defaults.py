# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/plan.yml sets the site's trust options once for the action group vmcloud.fleet.trust
(module_defaults), the site's CRLs (vmcloud_trust_crls) included: a real ansible-playbook run on
localhost refuses an index signed by an endorser the site's CRL revokes (certificate-revoked)."""

from __future__ import annotations

import datetime

from tests.integration.test_approvals_undefined import REPO, playbook
from tests.unit import pki
from tests.unit.sync_world import World, now


def test_plan_verifies_with_the_sites_crls(tmp_path):
    world = World(tmp_path / "world")
    world.publish("alma", 9)
    world.write_index(1)
    crl = tmp_path / "site.crl"
    crl.write_bytes(pki.pem(pki.make_crl(world.ca, [world.endorser.cert.serial_number],
                                         last_update=now() - datetime.timedelta(hours=1),
                                         next_update=now() + datetime.timedelta(days=7))))
    variables = {"vmcloud_plan_hosts": "localhost", "vmcloud_index_url": str(world.index_path),
                 "vmcloud_trust_anchors": [str(world.root / "trust" / "ca.pem")],
                 "vmcloud_lab_state_dir": str(tmp_path / "state"), "vmcloud_approved_images": []}
    done = playbook(tmp_path, REPO / "playbooks" / "plan.yml", **variables)
    assert done.returncode == 0, done.stdout[-3000:]
    done = playbook(tmp_path, REPO / "playbooks" / "plan.yml", **variables, vmcloud_trust_crls=[str(crl)])
    assert done.returncode != 0, done.stdout[-3000:]
    assert "certificate-revoked" in done.stdout, done.stdout[-3000:]
