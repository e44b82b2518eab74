"""Shared fixtures of the module tests: running a module in process, and its documentation as
ansible-doc shows it (the module's own text merged with the doc fragments it extends)."""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any, Callable, Dict

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

FRAGMENTS = "ansible_collections.vmcloud.fleet.plugins.doc_fragments"
COLLECTION = "vmcloud.fleet."


def fragment_documentation(name: str) -> Dict[str, Any]:
    """A doc fragment named as ``extends_documentation_fragment`` names it (``vmcloud.fleet._x[.VAR]``)."""
    assert name.startswith(COLLECTION), f"{name}: only this collection's fragments are documented here"
    module_name, _dot, variable = name[len(COLLECTION):].partition(".")
    fragment = importlib.import_module(f"{FRAGMENTS}.{module_name}").ModuleDocFragment
    return yaml.safe_load(getattr(fragment, variable.upper() or "DOCUMENTATION"))


def merged_documentation(module: ModuleType) -> Dict[str, Any]:
    """``module.DOCUMENTATION`` with its fragments merged as ansible-core merges them: the module's own
    option entries win, ``requirements`` / ``notes`` / ``seealso`` are joined."""
    doc = yaml.safe_load(module.DOCUMENTATION)
    for name in doc.pop("extends_documentation_fragment", []):
        fragment = fragment_documentation(name)
        for key in ("options", "attributes"):
            for option, spec in (fragment.get(key) or {}).items():
                doc.setdefault(key, {}).setdefault(option, spec)
        for key in ("requirements", "notes", "seealso"):
            if fragment.get(key):
                doc[key] = doc.get(key, []) + [item for item in fragment[key] if item not in doc.get(key, [])]
    return doc


@pytest.fixture
def module_docs() -> Callable[[ModuleType], Dict[str, Any]]:
    """``module_docs(module)``: the module's documentation with its fragments merged."""
    return merged_documentation


@pytest.fixture
def run_module(capsys) -> Callable[..., Dict[str, Any]]:
    """``run_module(module, **args)``: run ``module.main()`` with these arguments (``_ansible_check_mode``
    and ``_ansible_diff`` included) the way Ansible does, and return its JSON result."""

    def run(module: ModuleType, **args: Any) -> Dict[str, Any]:
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run
