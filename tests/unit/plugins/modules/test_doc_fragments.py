"""The doc fragments say what the code does: the retirement options are RETIRE_ARGSPEC, and each
module's requirements are the libraries its main() requires."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.doc_fragments._retire import ModuleDocFragment as Retire
from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import RETIRE_ARGSPEC

from .conftest import fragment_documentation
from .test_index_trust_options import assert_documented_like

MODULES = Path(__file__).resolve().parents[4] / "plugins" / "modules"
REQUIRED = re.compile(r"module_require\(module, ([^)]*)\)")


def test_the_retire_fragment_documents_the_retire_argspec():
    assert_documented_like(yaml.safe_load(Retire.DOCUMENTATION)["options"], RETIRE_ARGSPEC, "options")


@pytest.mark.parametrize("name", sorted(path.stem for path in MODULES.glob("*.py")))
def test_each_module_documents_the_libraries_its_main_requires(name, module_docs):
    module = importlib.import_module(f"ansible_collections.vmcloud.fleet.plugins.modules.{name}")
    found = REQUIRED.search(Path(module.__file__).read_text(encoding="utf-8"))
    libraries = [library.strip().strip("\"'") for library in found.group(1).split(",")] if found else []
    expected = [line for library in libraries
                for line in fragment_documentation(f"vmcloud.fleet._requirements.{library.upper()}")["requirements"]]
    assert sorted(module_docs(module).get("requirements", [])) == sorted(expected)
