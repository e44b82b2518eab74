# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain exceptions of vmcloud.fleet. Private to the collection; not a public API.

Every refusal names the rule that failed, so that a message reads
"<rule>: <what was found>; <what to do>". Modules turn these into fail_json
once, in main(); the imgdist CLI turns them into an exit status.
"""

from __future__ import annotations


class VmcloudError(Exception):
    """Base of every error that vmcloud reports to a user."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


class IndexRefused(VmcloudError):
    """The image index failed a verification rule; nothing was persisted."""


class ApprovalConfigError(VmcloudError):
    """The site's approval variables are malformed (unknown key, wrong type)."""


class StoreError(VmcloudError):
    """An operation on the image store could not be carried out safely."""


class EngineError(VmcloudError):
    """The BitTorrent engine refused or failed a request."""
