"""vmcloud.fleet.desired_images: the filter delegates to the selection library."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmcloud.fleet.plugins.filter.desired_images import FilterModule
from tests.unit import index_factory as factory

desired_images = FilterModule().filters()["desired_images"]
IMAGES = [
    factory.image(1, family="cernvm", version=1),
    factory.image(2, family="cernvm", version=2, targets={"hosts": [], "subclusters": ["sc-b"], "clusters": []}),
]


def test_returns_the_desired_list():
    result = desired_images(IMAGES, [{"name": "cernvm"}], host="hv01", subcluster="sc-a")
    assert [i["uuid"] for i in result] == ["cernvm-1"]
    result = desired_images(IMAGES, [{"name": "cernvm"}], host="hv03", subcluster="sc-b")
    assert [i["uuid"] for i in result] == ["cernvm-2"]


def test_report_explains_what_was_left_out():
    report = desired_images(IMAGES, [{"uuid": "cernvm-2"}], host="hv01", subcluster="sc-a", report=True)
    assert report["desired"] == [] and report["not_targeted"][0]["uuid"] == "cernvm-2"
    assert report["not_approved"] == ["cernvm-1"]


def test_typo_is_a_filter_error_naming_the_key():
    with pytest.raises(AnsibleFilterError, match=r"vmcloud_approved_images\[0\]: unknown key 'versoin'"):
        desired_images(IMAGES, [{"name": "cernvm", "versoin": 1}], host="hv01")


def test_host_is_required():
    with pytest.raises(AnsibleFilterError, match="'host' is required"):
        desired_images(IMAGES, [{"name": "cernvm"}])
