"""vmcloud.fleet.fleet_report: the matrix of the fleet report, from what each host reported."""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError
from jinja2 import Environment, FileSystemLoader

from ansible_collections.vmcloud.fleet.plugins.filter.fleet_report import STATES, FilterModule

fleet_report = FilterModule().filters()["fleet_report"]
INDEX = {"url": "http://catalogue/index.yaml", "version": 3, "expires": "2027-01-01T00:00:00Z"}
HOSTILE = "<script>alert(1)</script>"


def engine(state, progress=1.0, ratio=0.0, message=""):
    return {"state": state, "progress": progress, "ratio": ratio, "peers": 1, "message": message,
            "down_rate": 0, "up_rate": 0}


def row(uuid, state, store=None, desired=True, eng=None):
    name, _unused, version = uuid.rpartition("-")
    return {"uuid": uuid, "name": name, "version": int(version), "desired": desired, "state": state,
            "store": store, "engine": eng, "path": f"/store/{uuid}.img", "info_hash": "00" * 20}


def held(uuid, state="present"):
    name, _unused, version = uuid.rpartition("-")
    return {"uuid": uuid, "name": name, "version": int(version), "state": state, "path": f"/store/{uuid}.img",
            "size": 10, "sha256": "ab" * 32}


def host(name, rows=(), store=(), enabled=True, problems=(), unknown=None, sync=None, facts=None, index="INDEX",
         status=True):
    index = INDEX if index == "INDEX" else index  # a dict default would be shared between calls
    return {
        "host": name,
        "facts": facts if facts is not None else {"changed": False, "ansible_facts": {}},
        "status": {"host": name, "enabled": enabled, "index": index, "problems": list(problems),
                   "run_guard": {"state": "current", "rule": None}, "images": list(rows)} if status else None,
        "store": {"changed": False, "images": list(store)} if store is not None else None,
        "unknown": {"rc": 0, "stdout": json.dumps(unknown or []), "stderr": ""} if unknown is not False else None,
        "sync": sync,
    }


def systemctl(status, ended="Wed 2026-12-02 14:00:09 UTC", load="loaded"):
    return {"rc": 0, "stderr": "", "stdout": (
        f"LoadState={load}\nResult={'success' if status == 0 else 'exit-code'}\nExecMainStatus={status}\n"
        f"ExecMainStartTimestamp=Wed 2026-12-02 14:00:01 UTC\nExecMainExitTimestamp={ended}\n")}


def cells(report):
    uuids = [column["uuid"] for column in report["columns"]]
    return {(r["host"], uuid): cell for r in report["rows"] for uuid, cell in zip(uuids, r["cells"], strict=True)}


def one(h, uuid="img-1"):
    return cells(fleet_report([h]))[(h["host"], uuid)]


@pytest.mark.parametrize(("rows", "store", "state", "label"), [
    ([row("img-1", "ready", "present")], [held("img-1")], "verified", "verified"),
    ([row("img-1", "ready", "present", eng=engine("seeding", ratio=1.5))], [held("img-1")], "seeding", "seeding"),
    ([row("img-1", "retiring", "present", desired=False)], [held("img-1")], "present", "present"),
    ([row("img-1", "downloading", eng=engine("downloading", progress=0.4237))], [], "downloading",
     "downloading 42%"),
    ([row("img-1", "downloaded", eng=engine("seeding", progress=1.0))], [], "downloading", "downloading 100%"),
    ([row("img-1", "pending")], [], "missing", "missing"),
    ([row("img-1", "error", eng=engine("error", progress=0.1, message="tracker down"))], [], "missing", "missing"),
    ([row("img-1", "pending", "missing")], [held("img-1", "missing")], "missing", "missing"),
    ([row("img-1", "corrupt", "corrupt")], [held("img-1", "corrupt")], "corrupt", "corrupt"),
    ([], [held("img-1", "corrupt")], "corrupt", "corrupt"),
])
def test_each_cell_state(rows, store, state, label):
    cell = one(host("hv01", rows=rows, store=store))
    assert (cell["state"], cell["label"], cell["css"]) == (state, label, f"cell-{state}")
    assert state in STATES


def test_downloading_carries_its_progress_and_the_engine_message_reaches_the_detail():
    cell = one(host("hv01", rows=[row("img-1", "downloading", eng=engine("downloading", progress=0.4237))]))
    assert cell["progress"] == 42.4
    cell = one(host("hv01", rows=[row("img-1", "error", eng=engine("error", progress=0.1, message="tracker down"))]))
    assert "engine: error (tracker down)" in cell["detail"] and cell["progress"] is None


def test_a_superseded_image_kept_by_a_failed_upgrade_says_what_it_waits_for():
    kept = dict(row("img-1", "superseded-pending", "present", desired=False), waiting_for=["img-2"])
    cell = one(host("hv1", [kept, row("img-2", "pending")], [held("img-1")]))
    assert cell["state"] == "present"
    assert cell["detail"] == "store: present; superseded, kept until img-2 is in the store"


def test_an_image_another_host_holds_is_not_wanted_here():
    report = fleet_report([host("hv01", rows=[row("img-1", "ready", "present")], store=[held("img-1")]),
                           host("hv02", rows=[], store=[])])
    assert cells(report)[("hv02", "img-1")]["state"] == "none"
    assert cells(report)[("hv02", "img-1")]["label"] == "not wanted"


def test_without_the_fact_a_held_image_is_present_and_others_are_unknown():
    report = fleet_report([host("hv01", rows=[row("img-1", "ready", "present")], store=[held("img-1")]),
                           host("hv02", store=[held("other-2")], status=False)])
    assert cells(report)[("hv02", "other-2")]["state"] == "present"
    assert "no verified index" in cells(report)[("hv02", "other-2")]["detail"]
    assert cells(report)[("hv02", "img-1")]["state"] == "unknown"
    assert report["rows"][1]["enabled"] is None and report["rows"][1]["reachable"] is True


def test_a_disabled_host_shows_disabled_with_what_it_holds():
    report = fleet_report([host("hv01", rows=[row("img-1", "ready", "present")], store=[held("img-1")],
                                enabled=False, sync=systemctl(3))])
    cell = cells(report)[("hv01", "img-1")]
    assert (cell["state"], cell["label"]) == ("disabled", "disabled")
    assert "verified" in cell["detail"]
    assert report["rows"][0]["enabled"] is False
    assert report["rows"][0]["last_sync"]["meaning"] == "skipped: the host is disabled"
    assert report["rows"][0]["failures"] == []


def test_an_unreachable_host_is_unknown_everywhere_and_says_why():
    unreachable = {"host": "hv09", "facts": {"unreachable": True, "changed": False,
                                             "msg": "Failed to connect to the host via ssh: refused"},
                   "store": {"skipped": True}, "unknown": {"skipped": True}, "sync": {"skipped": True},
                   "status": None}
    report = fleet_report([host("hv01", rows=[row("img-1", "ready", "present")], store=[held("img-1")]),
                           unreachable])
    assert cells(report)[("hv09", "img-1")]["state"] == "unknown"
    hv09 = report["rows"][1]
    assert hv09["reachable"] is False and hv09["last_sync"] is None and hv09["unknown_files"] is None
    assert hv09["failures"] == ["facts: unreachable: Failed to connect to the host via ssh: refused"]


def test_a_host_whose_tasks_failed_is_unknown_and_lists_each_failure():
    failed = {"host": "hv08", "status": None,
              "facts": {"failed": True, "msg": "fact script vmcloud.fact failed"},
              "store": {"failed": True, "rule": "store-unreadable", "msg": "/store: Permission denied; fix it"},
              "unknown": {"rc": 127, "stdout": "", "stderr": "imgdist: not found", "failed": False},
              "sync": {"rc": 0, "stdout": "LoadState=not-found\n"}}
    report = fleet_report([failed])
    hv08 = report["rows"][0]
    assert hv08["reachable"] is False
    assert hv08["failures"] == ["facts: fact script vmcloud.fact failed",
                                "image_store_info: store-unreadable: /store: Permission denied; fix it",
                                "unknown files: exit status 127: imgdist: not found"]
    assert hv08["unknown_files"] is None
    missing = dict(failed, unknown={"rc": 2, "stdout": "", "stderr": "", "msg": "Error executing command.",
                                    "cmd": ["/usr/local/sbin/imgdist", "--list_unknown_files", "--json"]})
    assert fleet_report([missing])["rows"][0]["failures"][2] == (
        "unknown files: could not run /usr/local/sbin/imgdist: Error executing command.")
    assert hv08["last_sync"]["meaning"] == "the sync unit is not-found"


def test_last_sync_failures_problems_and_unknown_files():
    report = fleet_report([host("hv01", rows=[row("img-1", "ready", "present")], store=[held("img-1")],
                                problems=["engine: engine-unreachable: no answer"], unknown=["rogue.img"],
                                sync=systemctl(1))])
    hv01 = report["rows"][0]
    assert hv01["last_sync"] == {"time": "Wed 2026-12-02 14:00:09 UTC", "started": "Wed 2026-12-02 14:00:01 UTC",
                                 "result": "exit-code", "exit_status": 1, "meaning": "some image failed"}
    assert hv01["failures"][0] == "imgdist status: engine: engine-unreachable: no answer"
    assert hv01["failures"][1].startswith("last sync: some image failed (exit status 1)")
    assert hv01["unknown_files"] == ["rogue.img"]
    never_ran = {"rc": 0,
                 "stdout": "LoadState=loaded\nExecMainStatus=0\nExecMainStartTimestamp=\nExecMainExitTimestamp=\n"}
    never = fleet_report([host("hv01", sync=never_ran)])
    assert never["rows"][0]["last_sync"]["meaning"] == "never ran" and never["rows"][0]["failures"] == []


def test_the_newest_index_and_who_holds_it():
    old = dict(INDEX, version=2)
    report = fleet_report([host("hv01", index=INDEX), host("hv02", index=old), host("hv03", index=None)])
    assert report["index"] == dict(INDEX, hosts=["hv01"])
    assert [r["index"] for r in report["rows"]] == [INDEX, old, None]


def test_columns_are_sorted_by_name_and_version_and_counted():
    report = fleet_report([host("hv01", rows=[row("b-2", "pending"), row("b-10", "pending"), row("a-1", "pending")])])
    assert [c["uuid"] for c in report["columns"]] == ["a-1", "b-2", "b-10"]
    assert report["counts"]["missing"] == 3 and sum(report["counts"].values()) == 3
    assert [s["state"] for s in report["states"]] == list(STATES)


def test_bad_input_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match="list of per-host"):
        fleet_report({"host": "hv01"})
    with pytest.raises(AnsibleFilterError, match="mapping with 'host'"):
        fleet_report([{"status": None}])


def test_hostile_names_are_escaped_in_the_page():
    """The filter passes names through as data; the page's template escapes every one of them."""
    hostile_row = row("img-1", "ready", "present")
    hostile_row.update(uuid=HOSTILE, name='"><img src=x onerror=alert(1)>')
    report = fleet_report([host('hv"01<b>', rows=[hostile_row], store=[dict(held("img-1"), uuid=HOSTILE)],
                                problems=["<iframe src=//evil>"], unknown=["<svg onload=alert(1)>.img"])])
    assert report["columns"][0]["uuid"] == HOSTILE
    env = Environment(loader=FileSystemLoader("playbooks/templates"), autoescape=False)  # noqa: S701 (as Ansible)
    env.filters["comment"] = lambda text, style: f"<!--\n{text}\n-->"
    html = env.get_template("fleet_report.html.j2").render(
        ansible_managed="Ansible managed", vmcloud_report=report, vmcloud_report_generated="now")
    for raw in (HOSTILE, "<img", "<iframe", "<svg", 'hv"01<b>'):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;svg onload=alert(1)&gt;.img" in html
    assert "<script" not in html.lower()


def test_the_documentation_parses():
    import yaml

    from ansible_collections.vmcloud.fleet.plugins.filter import fleet_report as plugin

    docs = {name: yaml.safe_load(getattr(plugin, name)) for name in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert docs["DOCUMENTATION"]["name"] == "fleet_report" and "_value" in docs["RETURN"]


def test_a_fact_script_that_failed_is_a_failure_not_silence():
    """setup does not fail when a fact script does: ansible_local.vmcloud is then its error text."""
    broken = host("hv07", store=[held("img-1")])
    broken["status"] = "Failure executing fact script (/etc/ansible/facts.d/vmcloud.fact), rc: 5, err: imgdist: boom"
    hv07 = fleet_report([broken])["rows"][0]
    assert hv07["enabled"] is None and hv07["reachable"] is True
    assert hv07["failures"] == ["fact ansible_local.vmcloud: Failure executing fact script "
                                "(/etc/ansible/facts.d/vmcloud.fact), rc: 5, err: imgdist: boom"]


def test_a_sync_systemd_ended_says_how():
    timed_out = systemctl(9)
    timed_out["stdout"] = timed_out["stdout"].replace("Result=exit-code", "Result=timeout")
    last = fleet_report([host("hv01", sync=timed_out)])["rows"][0]["last_sync"]
    assert (last["exit_status"], last["result"], last["meaning"]) == (9, "timeout", "exit status 9 (systemd: timeout)")
