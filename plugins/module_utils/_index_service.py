# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch, verify, accept and select in one call: what the image_index module, the
desired_images filter and the imgdist CLI share. Private to the collection.

Options use the argument names of _argspec (INDEX_TRUST_ARGSPEC, FETCH_ARGSPEC,
SELECTION_ARGSPEC), so a module passes its params and imgdist its config file.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, Mapping, Optional

from ._fetch import read_source
from ._index import IndexPolicy, parse_utc_timestamp
from ._index_state import (
    AcceptedIndex,
    accept_index,
    check_rollback,
    read_high_water_mark,
    write_high_water_mark,
)
from ._lock import host_lock, lock_path
from ._selection import HostPlacement, parse_approvals, select_images
from ._trust import TrustStore, load_crls, load_pem_certificates, load_trust_anchors, parse_pins


def reference_time(value: Optional[str]) -> datetime.datetime:
    if not value:
        return datetime.datetime.now(datetime.UTC)
    return parse_utc_timestamp(value, "reference_time")


def build_policy(options: Mapping[str, Any], fetched_url: Optional[str]) -> IndexPolicy:
    trust = TrustStore(
        anchors=load_trust_anchors(options["trust_anchors"]),
        crls=load_crls(options.get("crl") or []),
        pinned_subjects=tuple(options.get("endorsers") or ()),
        pins=parse_pins(options.get("endorser_pins") or ()),
        now=reference_time(options.get("reference_time")),
    )
    legacy_certs = []
    for path in options.get("endorser_certificates") or []:
        with open(path, "rb") as handle:
            legacy_certs.extend(load_pem_certificates(handle.read(), path))
    return IndexPolicy(
        trust=trust,
        threshold=options.get("threshold", 1),
        legacy=bool(options.get("legacy")),
        legacy_certificates=legacy_certs,
        clock_skew=options.get("clock_skew", 300),
        max_size=options["max_size"],
        fetched_url=fetched_url,
    )


def fetch_and_accept(options: Mapping[str, Any], persist: bool) -> tuple:
    """(AcceptedIndex, raw bytes): fetch ``src``, verify, and advance the mark when ``persist``.

    The mark's read-check-write happens under the host lock (``commit_accepted``), so two writers
    never interleave; a refused index takes no lock and leaves ``state_dir`` as it was.
    """
    data, fetched_url = read_source(
        options["src"],
        max_size=options["max_size"],
        timeout=options.get("timeout", 30),
        ca_path=options.get("ca_path"),
        validate_certs=options.get("validate_certs", True),
    )
    policy = build_policy(options, fetched_url)
    accepted = accept_index(data, policy, options.get("state_dir"), persist=False, origin=options["src"])
    if persist:
        accepted = commit_accepted(options, accepted)
    return accepted, data


def commit_accepted(options: Mapping[str, Any], accepted: AcceptedIndex) -> AcceptedIndex:
    """Advance the rollback mark to an index verified with ``persist=False``: under the host lock, read
    the mark again, check it (``rollback`` when another run accepted a newer index meanwhile) and
    write it. Returns the acceptance as of that check. The sync calls it once its own checks pass,
    holding the lock already (re-entered)."""
    state_dir = options.get("state_dir")
    if accepted.index.format != "v2" or not state_dir:
        return accepted
    with host_lock(lock_path(state_dir)):
        mark = read_high_water_mark(state_dir, accepted.index.url)
        advanced = check_rollback(accepted.index, mark)
        if advanced:
            write_high_water_mark(state_dir, accepted.index, reference_time(options.get("reference_time")))
    return AcceptedIndex(index=accepted.index, previous_version=mark["version"] if mark else None, advanced=advanced)


def selection_for(images, options: Mapping[str, Any]) -> Dict[str, Any]:
    approvals = parse_approvals(options.get("approved"), options.get("blocked"), options.get("rules"))
    host = HostPlacement(
        hostname=options.get("host") or "", subcluster=options.get("subcluster"), cluster=options.get("cluster")
    )
    return select_images(images, approvals, host)


def result_of(accepted: AcceptedIndex) -> Dict[str, Any]:
    result = accepted.index.as_dict()
    result["previous_version"] = accepted.previous_version
    return result
