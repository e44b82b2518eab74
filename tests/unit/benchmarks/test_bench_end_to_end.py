"""The end-to-end benchmark's pure parts: the fleet's inventory, what it approves, how rows merge."""

from __future__ import annotations

import argparse

import pytest
import yaml

from benchmarks import bench_control_plane as control_plane
from benchmarks import bench_distribution as distribution
from benchmarks import bench_end_to_end as end_to_end
from benchmarks._containers import ROOT
from benchmarks._fleet import MAX_HYPERVISORS, Fleet, add_fleet_arguments, lab_group_vars

BENCH_APPROVAL = {"name": end_to_end.BENCH_IMAGE, "version": "latest"}


def fleet(tmp_path) -> Fleet:
    return Fleet(prefix="tt", network="vmcloud-tt", net="10.89.250", state=str(tmp_path), label="vmcloud.test=1")


def test_inventory_is_the_labs_shape_with_this_fleets_hosts_and_the_measured_settings(tmp_path):
    tt = fleet(tmp_path)
    tt.write_inventory(3, end_to_end.lxcloud_vars("scp_wave", "libtorrent"))
    with open(tt.inventory) as handle:
        lab = yaml.safe_load(handle)["all"]
    assert lab["vars"]["vmcloud_index_url"] == "http://10.89.250.10/index.yaml"
    assert lab["vars"]["vmcloud_trust_anchors"] == [f"{tmp_path}/endorser/ca.pem"]
    groups = lab["children"]["lab"]["children"]
    assert groups["catalogue"]["hosts"] == {"tt-catalogue": {"ansible_host": "10.89.250.10"}}
    lxcloud = groups["lxcloud"]
    assert lxcloud["children"]["sc_a"]["hosts"] == {"tt-hv01": {"ansible_host": "10.89.250.11"},
                                                    "tt-hv03": {"ansible_host": "10.89.250.13"}}
    assert lxcloud["children"]["sc_b"]["hosts"] == {"tt-hv02": {"ansible_host": "10.89.250.12"}}
    assert lxcloud["vars"]["vmcloud_distribution_method"] == "scp_wave"
    assert lxcloud["vars"]["vmcloud_engine"] == "libtorrent"
    approved = end_to_end.lxcloud_vars("scp_wave", "libtorrent")["vmcloud_approved_images"]
    assert lxcloud["vars"]["vmcloud_approved_images"] == approved


def test_the_end_to_end_approves_what_the_lab_approves_and_the_bench_image():
    lab_approvals = lab_group_vars()["lxcloud"]["vmcloud_approved_images"]
    assert lab_approvals, "inventories/lab approves no image: nothing for the end to end to converge with"
    approved = end_to_end.lxcloud_vars("bittorrent", "libtorrent")["vmcloud_approved_images"]
    assert approved == [*lab_approvals, BENCH_APPROVAL]


def test_a_change_of_the_labs_approvals_follows_into_the_end_to_end(monkeypatch):
    lab = lab_group_vars()
    lab["lxcloud"]["vmcloud_approved_images"] = [{"name": "other_demo-img", "version": 3}]
    monkeypatch.setattr(end_to_end, "lab_group_vars", lambda: lab)
    approved = end_to_end.lxcloud_vars("bittorrent", "libtorrent")["vmcloud_approved_images"]
    assert approved == [{"name": "other_demo-img", "version": 3}, BENCH_APPROVAL]


def test_the_fleet_benchmarks_converge_with_the_same_samples_and_the_lab_approves_them():
    assert control_plane.SAMPLES is end_to_end.SAMPLES
    lab_approvals = lab_group_vars()["lxcloud"]["vmcloud_approved_images"]
    assert {image["name"] for image in end_to_end.SAMPLES} <= {image["name"] for image in lab_approvals}


def test_the_benchmarks_look_for_images_in_the_collections_default_store():
    with open(f"{ROOT}/roles/vmcloud/defaults/main.yml") as handle:
        store = yaml.safe_load(handle)["vmcloud_store_dir"]
    assert end_to_end.STORE == distribution.STORE == store


def test_a_fleet_benchmark_refuses_more_hypervisors_than_a_fleet_has_before_it_starts_anything(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_fleet_arguments(parser, repeat=1)
    args = parser.parse_args(["--n", "4", str(MAX_HYPERVISORS + 1)])
    measured = []
    with pytest.raises(SystemExit) as refused:
        fleet(tmp_path).run_benchmark(parser, args, "test", lambda n, base: measured.append(n) or [])
    assert refused.value.code == 2 and measured == []
    assert f"at most {MAX_HYPERVISORS} hypervisors (tt-hv01..tt-hv{MAX_HYPERVISORS})" in capsys.readouterr().err


def test_each_version_of_the_bench_image_is_a_new_file_of_random_bytes():
    first, second = end_to_end.bench_image(7, 256), end_to_end.bench_image(8, 256)
    assert first["name"] == second["name"] == end_to_end.BENCH_IMAGE
    assert first["file"] != second["file"] and (first["version"], second["version"]) == (7, 8)
    assert first["random_mib"] == 256 and first["zero_mib"] == 0 and first["compressed"] is False


def test_end_to_end_figures_fill_the_transfer_rows_of_the_same_method_engine_and_n():
    rows = [{"method": "bittorrent", "engine": "libtorrent", "n": 4, "end_to_end_seconds": None},
            {"method": "bittorrent", "engine": "libtorrent", "n": 16, "end_to_end_seconds": None},
            {"method": "bittorrent", "engine": "rtorrent", "n": 4, "end_to_end_seconds": None},
            {"method": "scp_wave", "engine": "none", "n": 4, "end_to_end_seconds": None}]
    ends = [{"method": "bittorrent", "engine": "libtorrent", "n": 4, "end_to_end_seconds": 61.5},
            {"method": "scp_wave", "engine": None, "n": 4, "end_to_end_seconds": 140.0}]
    distribution.fill_end_to_end(rows, ends)
    assert [row["end_to_end_seconds"] for row in rows] == [61.5, None, None, 140.0]


def test_the_table_names_method_engine_n_and_the_ratio():
    row = {"method": "bittorrent", "engine": "libtorrent", "n": 4, "end_to_end_seconds": 64.4,
           "ratio_to_bound": 3.0, "playbook_seconds": 70.2}
    assert end_to_end.table([row]).splitlines()[2].split() == \
        ["|", "bittorrent", "|", "libtorrent", "|", "4", "|", "64.4", "|", "3.00", "|", "70.2", "|"]


def test_the_default_run_has_every_method_at_the_n_of_its_target():
    planned = distribution.planned_rows(list(distribution.METHODS), None)
    assert planned["libtorrent"] == (2, 4, 8, 16)  # the default engine: flat in N is its target
    assert planned["scp_wave"] == planned["scp_tsunami"] == (16,)
    assert planned["bittorrent"] == (8,) and planned["sequential"] == planned["http"] == (4,)
    assert distribution.DEFAULT_REPEAT == {"libtorrent": 3}


def test_n_given_runs_every_chosen_method_at_those_n_once_each_ascending():
    planned = distribution.planned_rows(["scp_wave", "http"], [8, 2, 8])
    assert planned == {"scp_wave": (2, 8), "http": (2, 8)}
