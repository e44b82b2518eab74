# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a hypervisor obtains an image's bytes before the one verify-and-promote path.

Private to the collection; not a public API. Plain Python: it runs on hypervisors.

``distribution_method`` (per host or group, ``vmcloud_distribution_method``):

- ``bittorrent`` (default): the engine downloads into ``<staging_dir>/<info_hash>`` (``_sync``'s
  engine hand-off; this module is not used);
- ``http``: straight from the catalogue's nginx (``http_url``, else the entry's first web seed), into
  ``<staging_dir>/<info_hash>/<file>`` with Range requests, resuming what an interrupted run left
  (``_fetch.download_file``: one deadline, the redirect rules);
- ``sharedfs``: the image is already on a shared mount (``sharedfs_dir``/<file>): nothing moves over
  the network, ``promote`` verifies it while copying it into the store;
- ``scp_wave``, ``scp_tsunami``: the controller pushes the image (``_push``) into
  ``<push_dir>/<info_hash>/<file>`` through the restricted receiver; the sync only promotes what was
  pushed (``staged-missing`` until then).

Every method returns a ``Staged`` (path, the directory below which nothing is followed, the user that
may own it); ``_sync`` promotes it with ``ImageStore.promote`` exactly as it promotes a download.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from ._errors import StoreError, VmcloudError
from ._fetch import download_file, is_url

METHODS = ("bittorrent", "http", "sharedfs", "scp_wave", "scp_tsunami")
DEFAULT_METHOD = "bittorrent"
PUSH_METHODS = ("scp_wave", "scp_tsunami")
DEFAULT_PUSH_DIR = "/var/lib/vmcloud/push"
DEFAULT_PUSH_USER = "vmcloud-push"
# A promote failure with one of these rules means the staged bytes are wrong: start over next time.
BAD_CONTENT_RULES = ("content-hash-mismatch", "sha256-mismatch", "size-mismatch", "unpacked-too-large")

METHODS_ARGSPEC = {
    "distribution_method": {"type": "str", "default": DEFAULT_METHOD, "choices": list(METHODS)},
    "http_url": {"type": "str"},
    "sharedfs_dir": {"type": "path"},
    "sharedfs_owner": {"type": "str"},
    "push_dir": {"type": "path", "default": DEFAULT_PUSH_DIR},
    "push_user": {"type": "str", "default": DEFAULT_PUSH_USER},
}


@dataclass(frozen=True)
class Staged:
    """Where the bytes of an image are, for ``ImageStore.promote``."""

    path: str
    staging_dir: str  # nothing below it is followed through a symlink
    owner: Optional[str]  # who may own the file besides root


class Method:
    name = "bittorrent"
    uses_engine = True

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def obtain(self, image: Dict[str, Any], timeout: float) -> Staged:  # pragma: no cover - engine path
        raise NotImplementedError

    def rejected(self, image: Dict[str, Any]) -> None:
        """The staged bytes did not verify: drop what this method made, so the next run starts over."""

    def staging_roots(self) -> List[str]:
        """Directories of ``<info_hash>`` subdirectories this method fills (cleaned when not desired)."""
        return []


def _staged_path(options: Mapping[str, Any], root: str, image: Dict[str, Any]) -> str:
    return os.path.join(root, image["torrent"]["info_hash"], image["file"])


def image_url(options: Mapping[str, Any], image: Dict[str, Any]) -> str:
    """The image's URL on the catalogue: ``http_url`` (a directory: the file name is appended) or the
    entry's first http(s) web seed (BEP 19: a URL ending in / is a directory)."""
    if options.get("http_url"):
        bases = [options["http_url"]]
    else:
        bases = [url for url in image.get("web_seeds") or [] if is_url(url)]
    if not bases:
        raise VmcloudError("option-invalid", f"distribution_method http: image {image['uuid']} has no web seed and "
                           "http_url is not set; set http_url (the catalogue's images/ URL)")
    base = bases[0]
    if options.get("http_url") or base.endswith("/"):
        return base.rstrip("/") + "/" + urllib.parse.quote(image["file"])
    return base


class HttpMethod(Method):
    name = "http"
    uses_engine = False

    def obtain(self, image: Dict[str, Any], timeout: float) -> Staged:
        root = self.options["staging_dir"]
        path = _staged_path(self.options, root, image)
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        if os.path.islink(directory) or not os.path.isdir(directory):
            raise StoreError("staged-unsafe", f"{directory} is a symlink or not a directory; remove it")
        partial = path + ".part"
        if not _complete(path, image):
            download_file(image_url(self.options, image), partial, int(image["size"]), timeout=max(timeout, 0.001),
                          ca_path=self.options.get("ca_path"),
                          validate_certs=self.options.get("validate_certs", True))
            os.replace(partial, path)
        return Staged(path, root, self.options.get("engine_user"))

    def rejected(self, image: Dict[str, Any]) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_staged_path(self.options, self.options["staging_dir"], image))


def _complete(path: str, image: Dict[str, Any]) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_size == image["size"]


class SharedfsMethod(Method):
    name = "sharedfs"
    uses_engine = False

    def obtain(self, image: Dict[str, Any], timeout: float) -> Staged:
        root = self.options.get("sharedfs_dir")
        if not root:
            raise VmcloudError("option-invalid", "distribution_method sharedfs needs sharedfs_dir (the shared mount "
                               "that holds the images); set it")
        return Staged(os.path.join(root, image["file"]), root, self.options.get("sharedfs_owner"))


class PushedMethod(Method):
    """scp_wave / scp_tsunami on a receiver: promote what the controller pushed into ``push_dir``."""

    uses_engine = False

    def __init__(self, options: Mapping[str, Any], name: str) -> None:
        super().__init__(options)
        self.name = name

    def obtain(self, image: Dict[str, Any], timeout: float) -> Staged:
        root = self.options.get("push_dir") or DEFAULT_PUSH_DIR
        return Staged(_staged_path(self.options, root, image), root, self.options.get("push_user") or DEFAULT_PUSH_USER)

    def rejected(self, image: Dict[str, Any]) -> None:
        root = self.options.get("push_dir") or DEFAULT_PUSH_DIR
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_staged_path(self.options, root, image))

    def staging_roots(self) -> List[str]:
        return [self.options.get("push_dir") or DEFAULT_PUSH_DIR]


def method_for(options: Mapping[str, Any]) -> Method:
    name = options.get("distribution_method") or DEFAULT_METHOD
    if name == "bittorrent":
        return Method(options)
    if name == "http":
        return HttpMethod(options)
    if name == "sharedfs":
        return SharedfsMethod(options)
    if name in PUSH_METHODS:
        return PushedMethod(options, name)
    raise VmcloudError("option-invalid", f"distribution_method {name!r} is not one of {', '.join(METHODS)}")
