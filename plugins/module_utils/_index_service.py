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
from ._index_state import AcceptedIndex, accept_index, write_high_water_mark
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

    Persisting takes the host lock (``_lock``) around the fetch and the mark's read-check-write, so
    two writers never interleave; a caller already holding it (``_sync.sync``) re-enters it.
    """
    if persist and options.get("state_dir"):
        with host_lock(lock_path(options["state_dir"])):
            return _fetch_and_accept(options, persist)
    return _fetch_and_accept(options, persist)


def _fetch_and_accept(options: Mapping[str, Any], persist: bool) -> tuple:
    data, fetched_url = read_source(
        options["src"],
        max_size=options["max_size"],
        timeout=options.get("timeout", 30),
        ca_path=options.get("ca_path"),
        validate_certs=options.get("validate_certs", True),
    )
    policy = build_policy(options, fetched_url)
    accepted = accept_index(data, policy, options.get("state_dir"), persist=persist, origin=options["src"])
    return accepted, data


def commit_accepted(options: Mapping[str, Any], accepted: AcceptedIndex) -> None:
    """Advance the rollback mark to an index ``fetch_and_accept(persist=False)`` accepted (the sync does
    it once its own checks pass). Under the host lock; the caller holds it already."""
    if accepted.advanced and options.get("state_dir"):
        with host_lock(lock_path(options["state_dir"])):
            write_high_water_mark(options["state_dir"], accepted.index, reference_time(options.get("reference_time")))


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
