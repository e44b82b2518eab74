# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""image_push: a sender's queue of a pipelined tsunami (transfers), its check mode and its refusals."""

from __future__ import annotations

from typing import Any, Dict

from ansible_collections.vmcloud.fleet.plugins.modules import image_push

from .conftest import module_result

IH = "ab" * 20


def run(capsys, **args: Any) -> Dict[str, Any]:
    base = {"sources": ["/nonexistent/img"], "info_hash": IH, "file": "x.img", "size": 10}
    return module_result(capsys, image_push, **{**base, **args})


def test_a_queue_in_check_mode_says_what_it_would_push_and_sends_nothing(capsys):
    queue = [{"address": "hv02", "chunk": 0}, {"address": "hv03", "chunk": 0}]
    result = run(capsys, _ansible_check_mode=True, transfers=queue)
    assert result["changed"] and result["sent"] == [] and result["failures"] == []
    assert result["diff"]["after"] == f"pushed hv02:{IH}/x.img#0\npushed hv03:{IH}/x.img#0\n"


def test_a_queue_naming_something_that_is_not_a_host_is_refused_with_its_rule(capsys):
    result = run(capsys, transfers=[{"address": "-oProxyCommand=x", "chunk": 0}])
    assert result["failed"] and result["rule"] == "option-invalid"


def test_a_destination_and_a_queue_at_once_are_refused(capsys):
    result = run(capsys, destination="hv02", transfers=[{"address": "hv02", "chunk": 0}])
    assert result["failed"] and "mutually exclusive" in result["msg"]


def test_a_queue_whose_chunks_never_arrive_is_left_not_failed(capsys):
    result = run(capsys, transfers=[{"address": "hv02", "chunk": 0}], stall_timeout=0.2, chunk_size=1048576)
    assert not result.get("failed") and not result["changed"]
    assert result["left"] == [["hv02", 0]] and result["sent"] == []
