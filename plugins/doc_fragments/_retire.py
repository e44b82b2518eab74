# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of every module that retires images (RETIRE_ARGSPEC in module_utils/_argspec.py): one plan
(module_utils/_reconcile_plan.py) for vmcloud.fleet.image_store and vmcloud.fleet.image_sync. Private to
the collection."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  not_desired:
    description:
      - What to do with images vmcloud holds that are no longer desired. V(retire) removes them; an image
        superseded by a newer version of its name stays until that version is verified in the store
        (supersede, never strand; M(vmcloud.fleet.image_sync) retires it at once when it is blocked or
        withdrawn from the index).
      - V(keep) keeps them as a local cache (a quick rollback) and evicts them, oldest first, only when
        O(max_bytes) or O(high_watermark_percent) needs the space; without either they stay.
    type: str
    choices: [retire, keep]
    default: retire
  max_bytes:
    description:
      - Quota of the store, in bytes (apparent size of every regular file under it, the quarantine
        included). When the store would still exceed it after this run's removals, kept images that are
        no longer desired are evicted, oldest modification time first, until it does not. A desired image
        is never evicted.
    type: int
  high_watermark_percent:
    description:
      - Like O(max_bytes), for the filesystem holding the store. Evicts until the filesystem's used space
        is at most this percentage of its size. With O(max_bytes) too, the stricter of the two applies.
    type: int
  retire_max_percent:
    description:
      - The mass-deletion guard. A run that would retire (or evict) more than this percentage of the images
        vmcloud manages in the store stops before changing anything, with rule C(retire-guard) saying how many
        of how many, unless O(retire_confirm=true). An image superseded by a newer version of the same name that
        is in the store does not count. V(100) turns the guard off.
      - The hypervisor role sets it from C(vmcloud_retire_max_percent).
    type: int
    default: 50
  retire_confirm:
    description:
      - Confirm a run the O(retire_max_percent) guard stops (C(-e vmcloud_retire_confirm=true) with the
        hypervisor role).
    type: bool
    default: false
"""
