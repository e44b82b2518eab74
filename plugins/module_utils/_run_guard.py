# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run guard's time policy: may a guest start from the kept index now? Private to the collection.

Downloads (the pull path, ``_sync``) verify a fetched index at the current time and fail closed:
an index past ``expires``, an expired certificate or a CRL past ``nextUpdate`` stops them. The run
guard (``imgdist check``, the libvirt hook, ``imgdist status``) re-verifies the *kept* index, which
a sync verified and accepted earlier. Verifying it at the current time only would turn one late
endorser, anchor renewal or CRL into "no guest starts anywhere in the fleet". So:

1. The kept index is verified at the current time. If that passes, nothing else is asked.
2. Otherwise it is verified again at the time it was accepted (``accepted_at`` of the rollback mark,
   for the very version and digest kept), with the same bytes, anchors and CRLs. Only the reference
   time differs between the two verifications, so what passes then and fails now failed on a time
   rule alone (index-expired, certificate-expired, crl-stale). What fails then too is denied at
   once: a revoked endorser (the CRLs on disk now are applied at both times, so revocation is never
   graced), a withdrawn anchor, a forged or rolled-back index.
3. A time-only failure is allowed for ``grace_seconds`` after the moment it began (found to the
   second: validity over time is one interval, so a bisection finds its end), loudly: the result
   carries the rule ``run-guard-grace`` and the deadline, which ``imgdist check``, ``imgdist
   status``, the local fact and the hook's syslog line show. After the deadline the original rule
   (index-expired, crl-stale, ...) refuses. ``grace_seconds`` 0 denies at once.

Approval and blocking are decided by the caller from the current configuration, never graced.
Legacy lists leave no rollback mark, hence no acceptance time: they get no grace.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Callable, Dict, Optional

from ._errors import IndexRefused, VmcloudError
from ._index import IndexPolicy, parse_utc_timestamp
from ._index_state import AcceptedIndex, accept_index, read_high_water_mark
from ._time import utc_text
from ._yaml import load_untrusted_yaml

DEFAULT_GRACE_SECONDS = 7 * 24 * 3600
GRACE_RULE = "run-guard-grace"
# The rules that depend on the reference time alone; a threshold failure names them in its detail.
TIME_RULES = ("index-expired", "certificate-expired", "crl-stale")


def check_grace_seconds(value: Any, where: str) -> int:
    """The grace period in seconds: an integer >= 0 (0: no grace)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VmcloudError("config-invalid", f"{where} must be a number of seconds >= 0 (0: no grace), got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Grace:
    """Why a guest may still start, and until when."""

    rule: str  # the time rule that fails now: index-expired, certificate-expired or crl-stale
    reason: str  # its message
    accepted_at: datetime.datetime
    failing_since: datetime.datetime
    deadline: datetime.datetime
    grace_seconds: int

    def message(self, what: str) -> str:
        return (f"{what} fails {self.rule} since {utc_text(self.failing_since)} ({self.reason}); it was "
                f"verified when accepted at {utc_text(self.accepted_at)}, so guests may start from the images "
                f"it approves until {utc_text(self.deadline)} (grace {self.grace_seconds} s), then they are "
                "refused: publish a fresh index, renew the certificate or refresh the CRL, and run imgdist sync")

    def to_dict(self, what: str) -> Dict[str, Any]:
        return {
            "state": "grace", "rule": GRACE_RULE, "failing_rule": self.rule, "reason": self.reason,
            "accepted_at": utc_text(self.accepted_at), "failing_since": utc_text(self.failing_since),
            "deadline": utc_text(self.deadline), "grace_seconds": self.grace_seconds,
            "message": f"{GRACE_RULE}: {self.message(what)}",
        }


@dataclasses.dataclass(frozen=True)
class KeptIndex:
    """The kept index as the run guard accepts it: valid now, or inside the grace period."""

    accepted: AcceptedIndex
    grace: Optional[Grace] = None

    @property
    def index(self):
        return self.accepted.index

    def describe(self) -> str:
        version = self.index.version
        return f"the kept index version {version}" if version is not None else "the kept index"

    def run_guard(self) -> Dict[str, Any]:
        if self.grace is None:
            return {"state": "current", "rule": None}
        return self.grace.to_dict(self.describe())

    def warning(self) -> Optional[str]:
        return f"{GRACE_RULE}: {self.grace.message(self.describe())}" if self.grace else None


def _at(policy: IndexPolicy, moment: datetime.datetime) -> IndexPolicy:
    return dataclasses.replace(policy, trust=dataclasses.replace(policy.trust, now=moment))


def _time_rule(exc: IndexRefused) -> str:
    """The time rule behind a refusal (a threshold failure lists each signature's rule)."""
    if exc.rule in TIME_RULES:
        return exc.rule
    found = [(exc.message.find(f"{rule}: "), rule) for rule in TIME_RULES if f"{rule}: " in exc.message]
    return min(found)[1] if found else exc.rule


def claimed_url(data: bytes, origin: str) -> Optional[str]:
    """The ``signed.url`` the kept index claims, read without trusting it: it only finds the mark,
    and the verification at the mark's time then covers it (it is signed) and its version and digest."""
    try:
        document = load_untrusted_yaml(data, origin)
    except VmcloudError:
        return None
    signed = document.get("signed") if isinstance(document, dict) else None
    url = signed.get("url") if isinstance(signed, dict) else None
    return url if isinstance(url, str) and url else None


def acceptance_time(state_dir: str, url: Optional[str], now: datetime.datetime) -> Optional[tuple]:
    """(accepted_at, version, digest) from the rollback mark for ``url``, or None (no usable mark)."""
    if not url:
        return None
    mark = read_high_water_mark(state_dir, url)
    if not mark:
        return None
    try:
        moment = parse_utc_timestamp(mark.get("accepted_at"), "accepted_at")
    except IndexRefused:
        return None
    return min(moment, now), mark["version"], mark.get("digest")  # a clock set back must not reach ahead


def _failing_since(verify: Callable[[datetime.datetime], Any], valid: datetime.datetime,
                   failing: datetime.datetime) -> datetime.datetime:
    """The first whole second at which ``verify`` fails, given it passes at ``valid`` and fails at ``failing``.

    Between the two, validity only ends (an expiry, a notAfter, a nextUpdate passes; notBefore and
    ``created`` held already at ``valid``), so the failing seconds form one run and bisection finds
    its first. ``valid`` is a whole second (the mark's) or later than one that is valid too.
    """
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    low = int((valid - epoch).total_seconds())  # floor: still inside the valid run
    high = -int(-(failing - epoch).total_seconds() // 1)  # ceil: still failing
    while high - low > 1:
        middle = (low + high) // 2
        try:
            verify(epoch + datetime.timedelta(seconds=middle))
        except IndexRefused:
            high = middle
        else:
            low = middle
    return epoch + datetime.timedelta(seconds=high)


def guarded_accept(data: bytes, policy: IndexPolicy, state_dir: str, origin: str, grace_seconds: int,
                   now: Optional[datetime.datetime] = None) -> KeptIndex:
    """Verify the kept index ``data`` for the run guard; raise IndexRefused when it is denied.

    See the module docstring. The rollback mark is checked at each verification and never advanced.
    """
    now = now or datetime.datetime.now(datetime.UTC)

    def verify(moment: datetime.datetime) -> AcceptedIndex:
        return accept_index(data, _at(policy, moment), state_dir, persist=False, origin=origin)

    try:
        return KeptIndex(verify(now))
    except IndexRefused as failure:
        refusal = failure
    acceptance = acceptance_time(state_dir, claimed_url(data, origin), now) if grace_seconds > 0 else None
    if acceptance is None:
        raise refusal  # no grace, or no acceptance time to go back to: deny as the pull path would
    accepted_at, version, digest = acceptance
    then = verify(accepted_at)  # a failure here is not about time (revoked, untrusted, forged): final
    if (then.index.version, then.index.digest) != (version, digest):
        raise refusal  # the mark records the acceptance of other bytes
    grace = datetime.timedelta(seconds=grace_seconds)
    earliest = max(accepted_at, now - grace)
    if earliest > accepted_at:
        try:
            verify(earliest)
        except IndexRefused:
            raise IndexRefused(
                refusal.rule,
                f"{refusal.message}; the run guard's grace of {grace_seconds} s after that has passed "
                f"(the kept index was accepted at {utc_text(accepted_at)})",
            ) from refusal
    since = _failing_since(verify, earliest, now)
    return KeptIndex(then, Grace(
        rule=_time_rule(refusal), reason=f"{refusal.rule}: {refusal.message}", accepted_at=accepted_at,
        failing_since=since, deadline=since + grace, grace_seconds=grace_seconds,
    ))
