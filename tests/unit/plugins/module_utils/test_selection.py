"""Selection: endorsed ∩ approved ∩ targeted, minus blocked, with the reasons reported."""

from __future__ import annotations

import pytest

from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import ApprovalConfigError
from ansible_collections.vmcloud.fleet.plugins.module_utils._selection import (
    HostPlacement,
    is_targeted,
    parse_approvals,
    select_images,
)
from tests.unit import index_factory as factory

HV01 = HostPlacement("hv01", subcluster="sc-a", cluster="lxcloud")
HV03 = HostPlacement("hv03", subcluster="sc-b", cluster="lxcloud")


def images():
    return [
        factory.image(1, family="cernvm", version=100),
        factory.image(2, family="cernvm", version=200),
        factory.image(3, family="cernvm", version=300, targets={"hosts": [], "subclusters": ["sc-b"], "clusters": []}),
        factory.image(4, family="slc5", version=10),
        factory.image(5, family="slc5", version=11, targets={"hosts": ["hv03"], "subclusters": [], "clusters": []}),
        factory.image(6, family="batch", version=1, targets={"hosts": [], "subclusters": [], "clusters": ["other"]}),
    ]


def select(approved, blocked=None, rules=None, host=HV01):
    return select_images(images(), parse_approvals(approved, blocked, rules), host)


def test_latest_picks_the_newest_version_targeted_at_the_host():
    assert select([{"name": "cernvm", "version": "latest"}])["desired_uuids"] == ["cernvm-200"]
    assert select([{"name": "cernvm", "version": "latest"}], host=HV03)["desired_uuids"] == ["cernvm-300"]


def test_version_defaults_to_latest():
    assert select([{"name": "cernvm"}])["desired_uuids"] == ["cernvm-200"]


def test_pinned_version_and_uuid():
    result = select([{"name": "cernvm", "version": 100}, {"uuid": "slc5-10"}])
    assert result["desired_uuids"] == ["cernvm-100", "slc5-10"]


def test_approved_but_not_endorsed_is_reported_never_selected():
    result = select([{"name": "cernvm", "version": 999}, {"uuid": "ghost-1"}, {"name": "nofamily"}])
    assert result["desired"] == []
    assert [r["approved_by"] for r in result["not_endorsed"]] == [
        "vmcloud_approved_images[0]", "vmcloud_approved_images[1]", "vmcloud_approved_images[2]",
    ]
    assert result["not_endorsed"][0]["image"] == "cernvm version 999"


def test_endorsed_but_not_approved_is_reported_never_selected():
    result = select([{"name": "slc5", "version": 10}])
    assert result["desired_uuids"] == ["slc5-10"]
    # Only images that could go to this host count as "not approved" here.
    assert result["not_approved"] == ["cernvm-100", "cernvm-200"]


def test_targets_exclude_other_hosts():
    result = select([{"uuid": "slc5-11"}, {"uuid": "batch-1"}, {"uuid": "cernvm-300"}])
    assert result["desired"] == []
    assert sorted(r["uuid"] for r in result["not_targeted"]) == ["batch-1", "cernvm-300", "slc5-11"]
    assert select([{"uuid": "slc5-11"}], host=HV03)["desired_uuids"] == ["slc5-11"]


@pytest.mark.parametrize(
    ("image_targets", "host", "expected"),
    [
        ({}, HV01, True),
        ({"hosts": ["hv01"]}, HV01, True),
        ({"hosts": ["hv02"]}, HV01, False),
        ({"subclusters": ["sc-a"]}, HV01, True),
        ({"clusters": ["lxcloud"]}, HV01, True),
        ({"clusters": ["lxcloud"]}, HostPlacement("laptop"), False),
        ({"hosts": ["hv09"], "subclusters": ["sc-a"]}, HV01, True),
    ],
)
def test_is_targeted(image_targets, host, expected):
    assert is_targeted({"targets": image_targets}, host) is expected


def test_blocked_wins_and_latest_falls_back_to_the_previous_version():
    result = select([{"name": "cernvm"}], blocked=[{"name": "cernvm", "version": 200}])
    assert result["desired_uuids"] == ["cernvm-100"]
    result = select([{"name": "cernvm", "version": 200}], blocked=[{"name": "cernvm", "version": 200}])
    assert result["desired"] == [] and result["blocked"][0]["blocked_by"] == "vmcloud_blocked_images[0]"


def test_blocking_a_family_blocks_every_version():
    result = select([{"name": "cernvm"}, {"uuid": "cernvm-100"}], blocked=[{"name": "cernvm"}])
    assert result["desired"] == []
    assert {b["uuid"] for b in result["blocked"]} == {"cernvm-200", "cernvm-100"}


def test_jmespath_rules_approve_images():
    result = select([], rules=["[?name=='cernvm' && version > `100`]"])
    # cernvm-300 matches the rule but is targeted at sc-b only.
    assert result["desired_uuids"] == ["cernvm-200"]
    assert [r["uuid"] for r in result["not_targeted"]] == ["cernvm-300"]


def test_rules_may_return_uuids():
    assert select([], rules=["[?name=='slc5'].uuid"])["desired_uuids"] == ["slc5-10"]


def test_desired_set_is_sorted_and_unique():
    result = select([{"uuid": "slc5-10"}, {"name": "slc5", "version": 10}, {"name": "cernvm"}])
    assert result["desired_uuids"] == ["cernvm-200", "slc5-10"]


@pytest.mark.parametrize(
    ("approved", "blocked", "rules", "fragment"),
    [
        ([{"nmae": "cernvm"}], None, None, "vmcloud_approved_images[0]: unknown key 'nmae'"),
        ([{"name": "cernvm", "version": "newest"}], None, None, "vmcloud_approved_images[0]: key 'version'"),
        ([{"name": "cernvm", "version": "1"}], None, None, "key 'version' must be 'latest' or an integer"),
        ([{"name": 5}], None, None, "vmcloud_approved_images[0]: key 'name' must be a non-empty string"),
        ([{"name": "a", "uuid": "b"}], None, None, "give exactly one of 'name' and 'uuid'"),
        ([{}], None, None, "give exactly one of 'name' and 'uuid'"),
        (["cernvm"], None, None, "vmcloud_approved_images[0]: expected a mapping"),
        ({"name": "cernvm"}, None, None, "vmcloud_approved_images: expected a list"),
        ([], [{"name": "x", "version": "latest"}], None, "vmcloud_blocked_images[0]: key 'version' of a block"),
        ([], [{"uuid": "x", "reason": "bad"}], None, "vmcloud_blocked_images[0]: unknown key 'reason'"),
        ([], None, ["[?name=="], "vmcloud_approval_rules[0]: invalid jmespath expression"),
        ([], None, [42], "vmcloud_approval_rules[0]: expected a jmespath expression string"),
    ],
)
def test_typos_name_the_variable_and_key(approved, blocked, rules, fragment):
    with pytest.raises(ApprovalConfigError) as caught:
        parse_approvals(approved, blocked, rules)
    assert caught.value.rule == "approval-invalid"
    assert fragment in str(caught.value)


def test_rule_returning_a_non_list_is_an_error():
    with pytest.raises(ApprovalConfigError) as caught:
        select([], rules=["length(@)"])
    assert "vmcloud_approval_rules[0]: the expression must return a list" in str(caught.value)


def test_comment_is_allowed():
    assert select([{"name": "slc5", "version": 10, "comment": "ticket 42"}])["desired_uuids"] == ["slc5-10"]
