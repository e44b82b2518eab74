# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired image set of a host: endorsed ∩ approved ∩ targeted, minus blocked.

Private to the collection; not a public API. The endorser decides what is endorsed
(the verified index), the site decides what is approved (inventory variables), and
an image's targets decide where it may go. Everything that was asked for and not
selected is reported with the reason, so a run says why a host lacks an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ._errors import ApprovalConfigError

APPROVED_VAR = "vmcloud_approved_images"
BLOCKED_VAR = "vmcloud_blocked_images"
RULES_VAR = "vmcloud_approval_rules"
_ENTRY_KEYS = {"name", "version", "uuid", "comment"}


@dataclass(frozen=True)
class ImageRef:
    """One approval or block entry: by uuid, or by name with a version (or latest / any)."""

    source: str
    name: Optional[str] = None
    version: Any = None
    uuid: Optional[str] = None

    def describe(self) -> str:
        if self.uuid:
            return f"uuid {self.uuid}"
        return f"{self.name} version {self.version if self.version is not None else 'any'}"


@dataclass
class Approvals:
    approved: List[ImageRef] = field(default_factory=list)
    blocked: List[ImageRef] = field(default_factory=list)
    rules: List[Any] = field(default_factory=list)
    rule_sources: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostPlacement:
    hostname: str
    subcluster: Optional[str] = None
    cluster: Optional[str] = None


def _parse_entry(entry: Any, source: str, variable: str, allow_latest: bool) -> ImageRef:
    if not isinstance(entry, dict):
        raise ApprovalConfigError(
            "approval-invalid", f"{source}: expected a mapping with 'name' (and 'version') or 'uuid', got {entry!r}"
        )
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ApprovalConfigError(
            "approval-invalid",
            f"{source}: unknown key {unknown[0]!r} in {variable} (allowed: {', '.join(sorted(_ENTRY_KEYS))})",
        )
    name, uuid, version = entry.get("name"), entry.get("uuid"), entry.get("version")
    if (name is None) == (uuid is None):
        raise ApprovalConfigError("approval-invalid", f"{source}: give exactly one of 'name' and 'uuid'")
    for key, value in (("name", name), ("uuid", uuid), ("comment", entry.get("comment"))):
        if value is not None and (not isinstance(value, str) or not value):
            raise ApprovalConfigError(
                "approval-invalid", f"{source}: key {key!r} must be a non-empty string, got {value!r}"
            )
    if uuid is not None and version is not None:
        raise ApprovalConfigError("approval-invalid", f"{source}: key 'version' goes with 'name', not 'uuid'")
    if name is not None:
        if version is None and allow_latest:
            version = "latest"
        if version is not None and version != "latest" and (isinstance(version, bool) or not isinstance(version, int)):
            raise ApprovalConfigError(
                "approval-invalid",
                f"{source}: key 'version' must be 'latest' or an integer image version, got {version!r}",
            )
        if version == "latest" and not allow_latest:
            raise ApprovalConfigError(
                "approval-invalid", f"{source}: key 'version' of a block is an integer, or left out for all versions"
            )
    return ImageRef(source=source, name=name, version=version, uuid=uuid)


def _parse_list(value: Any, variable: str, allow_latest: bool) -> List[ImageRef]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApprovalConfigError("approval-invalid", f"{variable}: expected a list, got {type(value).__name__}")
    return [_parse_entry(entry, f"{variable}[{i}]", variable, allow_latest) for i, entry in enumerate(value)]


def parse_approvals(approved: Any, blocked: Any = None, rules: Any = None) -> Approvals:
    """Validate the site's approval variables; a typo fails naming the variable and the key."""
    result = Approvals(
        approved=_parse_list(approved, APPROVED_VAR, allow_latest=True),
        blocked=_parse_list(blocked, BLOCKED_VAR, allow_latest=False),
    )
    if rules is None:
        return result
    if isinstance(rules, str):
        rules = [rules]
    if not isinstance(rules, list):
        raise ApprovalConfigError("approval-invalid", f"{RULES_VAR}: expected a list of jmespath expressions")
    if rules:
        import jmespath  # only sites that use rules need jmespath on the hypervisor
        from jmespath.exceptions import JMESPathError

        for i, expression in enumerate(rules):
            source = f"{RULES_VAR}[{i}]"
            if not isinstance(expression, str) or not expression.strip():
                raise ApprovalConfigError("approval-invalid", f"{source}: expected a jmespath expression string")
            try:
                result.rules.append(jmespath.compile(expression))
            except JMESPathError as exc:
                raise ApprovalConfigError("approval-invalid", f"{source}: invalid jmespath expression ({exc})") from exc
            result.rule_sources.append(source)
    return result


def is_targeted(image: Dict[str, Any], host: HostPlacement) -> bool:
    targets = image.get("targets") or {}
    hosts, subclusters, clusters = (targets.get(k) or [] for k in ("hosts", "subclusters", "clusters"))
    if not (hosts or subclusters or clusters):
        return True
    return (
        host.hostname in hosts
        or (host.subcluster is not None and host.subcluster in subclusters)
        or (host.cluster is not None and host.cluster in clusters)
    )


def _matches(ref: ImageRef, image: Dict[str, Any]) -> bool:
    if ref.uuid is not None:
        return image["uuid"] == ref.uuid
    return image["name"] == ref.name and (ref.version in (None, "latest") or image["version"] == ref.version)


def is_blocked(image: Dict[str, Any], blocked: Sequence[ImageRef]) -> bool:
    """Whether a block entry matches ``image`` (uuid, name and version; a held image without a name
    matches by uuid only)."""
    return any(_matches(ref, image) for ref in blocked)


def _rule_uuids(rule, source: str, images: Sequence[Dict[str, Any]]) -> List[str]:
    found = rule.search(list(images))
    if found is None:
        return []
    if not isinstance(found, list):
        raise ApprovalConfigError(
            "approval-invalid", f"{source}: the expression must return a list of images, got {type(found).__name__}"
        )
    uuids = []
    for item in found:
        uuid = item.get("uuid") if isinstance(item, dict) else item
        if not isinstance(uuid, str):
            raise ApprovalConfigError("approval-invalid", f"{source}: the expression must return images or uuids")
        uuids.append(uuid)
    return uuids


def select_images(images: Sequence[Dict[str, Any]], approvals: Approvals, host: HostPlacement) -> Dict[str, Any]:
    """The host's desired image set, with a report of everything left out and why."""
    by_uuid = {image["uuid"]: image for image in images}
    by_name: Dict[str, List[Dict[str, Any]]] = {}
    for image in images:
        by_name.setdefault(image["name"], []).append(image)

    def blocked_by(image: Dict[str, Any]) -> Optional[ImageRef]:
        return next((ref for ref in approvals.blocked if _matches(ref, image)), None)

    chosen: Dict[str, Dict[str, Any]] = {}
    approved_uuids = set()
    report: Dict[str, List[Dict[str, Any]]] = {"not_endorsed": [], "not_targeted": [], "blocked": []}

    def consider(image: Dict[str, Any], source: str) -> None:
        approved_uuids.add(image["uuid"])
        if not is_targeted(image, host):
            report["not_targeted"].append({"uuid": image["uuid"], "approved_by": source})
            return
        block = blocked_by(image)
        if block is not None:
            report["blocked"].append({"uuid": image["uuid"], "approved_by": source, "blocked_by": block.source})
            return
        chosen[image["uuid"]] = image

    for ref in approvals.approved:
        if ref.uuid is not None:
            candidates = [by_uuid[ref.uuid]] if ref.uuid in by_uuid else []
        elif ref.version == "latest":
            family = by_name.get(ref.name, [])
            targeted = [img for img in family if is_targeted(img, host)]
            usable = [img for img in targeted if blocked_by(img) is None]
            pool = usable or targeted or family  # none usable: report why on the newest one
            candidates = [max(pool, key=lambda img: img["version"])] if pool else []
        else:
            candidates = [img for img in by_name.get(ref.name, []) if img["version"] == ref.version]
        if not candidates:
            report["not_endorsed"].append(
                {"approved_by": ref.source, "image": ref.describe(), "reason": "approved but not in the verified index"}
            )
        for image in candidates:
            consider(image, ref.source)

    for rule, source in zip(approvals.rules, approvals.rule_sources, strict=True):
        for uuid in _rule_uuids(rule, source, images):
            if uuid in by_uuid:
                consider(by_uuid[uuid], source)

    desired = sorted(chosen.values(), key=lambda img: (img["name"], img["version"], img["uuid"]))
    not_approved = sorted(
        img["uuid"] for img in images if img["uuid"] not in approved_uuids and is_targeted(img, host)
    )
    return {
        "host": host.hostname,
        "desired": desired,
        "desired_uuids": [img["uuid"] for img in desired],
        "not_endorsed": report["not_endorsed"],
        "not_approved": not_approved,
        "not_targeted": report["not_targeted"],
        "blocked": report["blocked"],
    }
