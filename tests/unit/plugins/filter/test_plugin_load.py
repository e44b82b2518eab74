"""Loading the collection's filter plugins is cheap: Ansible loads every filter file of vmcloud.fleet in each
task's worker process, for each host, whenever a task names any of its filters (a no-op site.yml at N = 16
spent about 1.7 s a task on it). The library a filter needs is imported when the filter runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FILTERS = sorted(path.stem for path in (Path(__file__).parents[4] / "plugins" / "filter").glob("*.py"))
HEAVY = ("cryptography", "yaml", "ansible_collections.vmcloud.fleet.plugins.module_utils._index",
         "ansible_collections.vmcloud.fleet.plugins.module_utils._imgdist_config")


@pytest.mark.parametrize("name", FILTERS)
def test_loading_a_filter_plugin_imports_no_heavy_library(name):
    code = (f"import sys, json, ansible.errors\n"
            f"import ansible_collections.vmcloud.fleet.plugins.filter.{name} as plugin\n"
            f"plugin.FilterModule().filters()\n"
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": ":".join(sys.path)})
    assert json.loads(done.stdout) == [], f"filter plugin {name} imports {done.stdout.strip()} when it loads"


def test_every_filter_file_is_checked():
    expected = {"crl_info", "desired_images", "fleet_report", "push_round", "kept_differences", "text_table"}
    assert expected <= set(FILTERS)
