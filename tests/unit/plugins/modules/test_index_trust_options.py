"""The index trust options as Ansible sees them: endorser_pins is typed by the argspec,
documented like it, and reaches the verifier through vmcloud.fleet.image_index."""

from __future__ import annotations

from typing import Any, Dict

import pytest
import yaml

from ansible_collections.vmcloud.fleet.plugins.doc_fragments._index_trust import ModuleDocFragment
from ansible_collections.vmcloud.fleet.plugins.module_utils._argspec import INDEX_TRUST_ARGSPEC
from ansible_collections.vmcloud.fleet.plugins.module_utils._trust import subject_of
from ansible_collections.vmcloud.fleet.plugins.modules import image_index
from tests.unit import index_factory as factory
from tests.unit import pki

from .conftest import module_result


def assert_documented_like(documented: Dict[str, Any], spec: Dict[str, Any], where: str) -> None:
    assert set(documented) == set(spec), where
    for name, option in spec.items():
        doc = documented[name]
        for key in ("type", "elements", "default", "choices"):
            assert doc.get(key) == option.get(key), f"{where}.{name}.{key}"
        assert bool(doc.get("required")) == bool(option.get("required")), f"{where}.{name}.required"
        assert bool(doc.get("suboptions")) == bool(option.get("options")), f"{where}.{name}.suboptions"
        if option.get("options"):
            assert_documented_like(doc["suboptions"], option["options"], f"{where}.{name}")


def test_the_fragment_documents_the_index_trust_argspec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert_documented_like(documented, INDEX_TRUST_ARGSPEC, "options")
    assert INDEX_TRUST_ARGSPEC["endorser_pins"]["elements"] == "dict"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bundle")
    real_ca = pki.make_ca("CERN Grid CA")
    rogue_ca = pki.make_ca("Some Other Grid CA")
    (directory / "anchors.pem").write_bytes(pki.pem(real_ca.cert) + pki.pem(rogue_ca.cert))
    return {
        "anchors": str(directory / "anchors.pem"),
        "real_ca": real_ca,
        "real": pki.make_endorser(real_ca, "cern-it"),
        "rogue": pki.make_endorser(rogue_ca, "cern-it"),
    }


def run(capsys, tmp_path, bundle, signer, **extra):
    src = tmp_path / "index.yaml"
    src.write_bytes(factory.document(factory.signed_index([factory.image(1)]), [signer]))
    args = {"src": str(src), "trust_anchors": [bundle["anchors"]], "state_dir": str(tmp_path / "state"),
            "reference_time": factory.NOW, **extra}
    return module_result(capsys, image_index, **args)


def test_image_index_pins_subject_and_issuer(capsys, tmp_path, bundle):
    pins = [{"subject": subject_of(bundle["real"].cert), "issuer": subject_of(bundle["real_ca"].cert)}]
    accepted = run(capsys, tmp_path, bundle, bundle["real"], endorser_pins=pins)
    assert accepted.get("failed") is not True and accepted["version"] == 1
    state_before = {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir()}
    refused = run(capsys, tmp_path, bundle, bundle["rogue"], endorser_pins=pins)
    assert refused["failed"] is True and refused["rule"] == "threshold-not-met"
    assert "endorser-not-pinned" in refused["msg"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir()} == state_before


def test_image_index_refuses_a_pin_without_issuer_before_verifying(capsys, tmp_path, bundle):
    result = run(capsys, tmp_path, bundle, bundle["real"],
                 endorser_pins=[{"subject": subject_of(bundle["real"].cert)}])
    assert result["failed"] is True
    assert "missing required arguments: issuer" in result["msg"] and "endorser_pins" in result["msg"]
    assert not (tmp_path / "state").exists()
