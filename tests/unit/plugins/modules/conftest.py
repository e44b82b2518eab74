"""Shared fixtures of the module tests: running a module (in process, or as on a host without a
library), the trust a module verifies indexes with and its arguments, and a module's documentation
as ansible-doc shows it (its own text merged with the doc fragments it extends)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vmcloud.fleet.plugins.module_utils._engine_rtorrent import RtorrentEngine
from ansible_collections.vmcloud.fleet.plugins.module_utils._errors import EngineError
from tests.unit import index_factory as factory
from tests.unit import pki
from tests.unit.fake_rtorrent import FakeRtorrent

FRAGMENTS = "ansible_collections.vmcloud.fleet.plugins.doc_fragments"
COLLECTION = "vmcloud.fleet."
REPO = Path(__file__).resolve().parents[4]


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


def module_result(capsys, module: ModuleType, **args: Any) -> Dict[str, Any]:
    """Run ``module.main()`` in this process with these arguments (``_ansible_check_mode``,
    ``_ansible_diff`` included) as Ansible passes them, and return its JSON result."""
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


# Runs a module as Ansible does on a host (the args file as argv[1]) with the named top-level imports failing.
BLOCKING_RUNNER = textwrap.dedent("""
    import runpy, sys
    blocked = set(sys.argv.pop(1).split(","))
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"No module named {name!r}")
            return None
    sys.meta_path.insert(0, Blocker())
    runpy.run_module(sys.argv.pop(1), run_name="__main__")
""")


def module_result_without(tmp_path: Path, module: ModuleType, libraries: Sequence[str], **args: Any) -> Dict[str, Any]:
    """Run ``module`` in its own Python process, as on a host, where importing ``libraries`` fails."""
    args_file = tmp_path / f"{module.__name__.rpartition('.')[2]}-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run(
        [sys.executable, "-c", BLOCKING_RUNNER, ",".join(libraries), module.__name__, str(args_file)],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": f"{REPO / 'collections'}:{REPO}", "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    assert done.stdout, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def run_module(capsys, tmp_path) -> Callable[..., Dict[str, Any]]:
    """``run_module(module, **args)``: the module's JSON result, run in process (``module_result``);
    ``run_module(module, without=["cryptography"], **args)``: run in its own process where those
    libraries cannot be imported (``module_result_without``)."""

    def run(module: ModuleType, without: Sequence[str] = (), **args: Any) -> Dict[str, Any]:
        if without:
            return module_result_without(tmp_path, module, without, **args)
        return module_result(capsys, module, **args)

    return run


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> Dict[str, Any]:
    """A CA (its certificate in ``dir``/ca.pem, the modules' ``trust_anchors``) and an endorser it issued."""
    directory = tmp_path_factory.mktemp("trust")
    ca = pki.make_ca("module test CA")
    (directory / "ca.pem").write_bytes(pki.pem(ca.cert))
    return {"dir": directory, "ca": ca, "endorser": pki.make_endorser(ca, "lab-endorser", key_type="ec"),
            "anchors": [str(directory / "ca.pem")]}


def write_index(path: Path, trust: Mapping[str, Any], version: int = 2, images: Optional[List[Dict[str, Any]]] = None
                ) -> str:
    """A v2 index at ``path`` signed by ``trust``'s endorser (default: one image, version 2)."""
    images = [factory.image(1)] if images is None else images
    path.write_bytes(factory.document(factory.signed_index(images, version=version), [trust["endorser"]]))
    return str(path)


def index_args(trust: Mapping[str, Any], src: Any, state_dir: Any, **extra: Any) -> Dict[str, Any]:
    """The arguments of vmcloud.fleet.image_index that every test gives: source, anchors, state, time."""
    return {"src": str(src), "trust_anchors": list(trust["anchors"]), "state_dir": str(state_dir),
            "reference_time": factory.NOW, **extra}


def fake_rtorrent_behind(monkeypatch, module: ModuleType) -> FakeRtorrent:
    """A FakeRtorrent behind the real RtorrentEngine as ``module``'s engine for O(engine=rtorrent);
    ``fake.made`` lists each (engine name, options) the module asked for. Any other engine (the
    default, libtorrent, among them) is unreachable: the fake is an rtorrent only."""
    fake = FakeRtorrent()
    made: List[tuple] = []

    def engine_for(name: str, **options: Any) -> RtorrentEngine:
        made.append((name, options))
        if name != "rtorrent":
            raise EngineError("engine-unreachable", f"no {name} engine in this test (the fake is an rtorrent)")
        return RtorrentEngine(proxy=fake, **options)

    monkeypatch.setattr(module, "engine_for", engine_for)
    fake.made = made
    return fake
