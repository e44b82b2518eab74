# Copyright: vmcloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The third-party Python libraries of vmcloud.fleet, in one place. Private to the collection.

Every module_utils file imports its libraries (cryptography, PyYAML, fastbencode) so that a
missing one does not stop the import: ``except ImportError: name = absent("cryptography")``
binds a stand-in, and the library is named when it is really needed:

- modules call :func:`module_require` first thing in ``main()``; it fails the task with
  ansible's ``missing_required_lib`` message naming the Debian and pip packages;
- the imgdist CLI, filters and other callers call :func:`require`, which raises
  :class:`LibraryMissing` (rule ``library-missing``);
- anything that reaches a stand-in anyway (calls it, instantiates one of its classes) gets the
  same :class:`LibraryMissing`, never an ``AttributeError`` on ``None``.

Stays importable without ansible (the hypervisor artifact runs this package with Debian's
/usr/bin/python3 and python3-cryptography, python3-yaml, python3-fastbencode):
``ansible.module_utils.basic`` is imported only inside :func:`module_require`.
"""

from __future__ import annotations

import importlib
import traceback
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ._errors import VmcloudError

RULE = "library-missing"


@dataclass(frozen=True)
class Library:
    """A third-party library: what ``import`` names it, its Debian package and its pip name."""

    name: str
    debian: str
    pip: str

    def describe(self) -> str:
        """``cryptography (Debian package python3-cryptography, pip package cryptography)``."""
        return f"{self.name} (Debian package {self.debian}, pip package {self.pip})"


LIBRARIES: Dict[str, Library] = {
    "cryptography": Library("cryptography", "python3-cryptography", "cryptography"),
    "yaml": Library("yaml", "python3-yaml", "PyYAML"),
    "fastbencode": Library("fastbencode", "python3-fastbencode", "fastbencode"),
    "jmespath": Library("jmespath", "python3-jmespath", "jmespath"),
}


class LibraryMissing(VmcloudError):
    """A Python library that this operation needs is not installed where it runs."""

    def __init__(self, name: str, detail: str = "") -> None:
        library = LIBRARIES[name]
        super().__init__(RULE, f"the Python library {library.describe()} is not installed for this Python"
                               f"{'; ' + detail if detail else ''}; install it and retry")
        self.library = library


_IMPORT_ERRORS: Dict[str, str] = {}


def import_error(name: str) -> Optional[str]:
    """The traceback of the failed import of library ``name``, None when it imports."""
    if name not in LIBRARIES:
        raise KeyError(f"unknown library {name!r}; add it to LIBRARIES")
    if name not in _IMPORT_ERRORS:
        try:
            importlib.import_module(name)
        except ImportError:
            _IMPORT_ERRORS[name] = traceback.format_exc()
        else:
            _IMPORT_ERRORS[name] = ""
    return _IMPORT_ERRORS[name] or None


def load(name: str) -> Any:
    """The imported library ``name``; :class:`LibraryMissing` when it is not installed."""
    if import_error(name) is not None:
        raise LibraryMissing(name)
    return importlib.import_module(name)


def require(*names: str) -> None:
    """Raise :class:`LibraryMissing` for the first of ``names`` that is not installed."""
    for name in names:
        if import_error(name) is not None:
            raise LibraryMissing(name)


def module_require(module: Any, *names: str) -> None:
    """Fail the module with ``missing_required_lib`` for the first of ``names`` not installed."""
    for name in names:
        error = import_error(name)
        if error is not None:
            from ansible.module_utils.basic import missing_required_lib  # pylint: disable=import-outside-toplevel
            module.fail_json(msg=missing_required_lib(LIBRARIES[name].describe()), exception=error)


class _AbsentType(type):
    """Metaclass of stand-in classes: their attributes are stand-ins too."""

    def __getattr__(cls, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _stand_in(cls._vmcloud_library, f"{cls.__qualname__}.{attribute}")


class _AbsentClass(Exception, metaclass=_AbsentType):
    """Base of stand-in classes: can be subclassed, named in ``except`` and ``isinstance``
    (never matching), but not instantiated."""

    _vmcloud_library = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pylint: disable=super-init-not-called
        raise LibraryMissing(type(self)._vmcloud_library, f"{type(self).__qualname__} is needed")


class Absent:
    """Stand-in for a module or function of a library that did not import."""

    def __init__(self, library: str, qualname: str) -> None:
        self._vmcloud_library = library
        self._vmcloud_qualname = qualname

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _stand_in(self._vmcloud_library, f"{self._vmcloud_qualname}.{attribute}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise LibraryMissing(self._vmcloud_library, f"{self._vmcloud_qualname} is needed")

    def __repr__(self) -> str:
        return f"<absent {self._vmcloud_qualname}>"


def _stand_in(library: str, qualname: str) -> Any:
    last = qualname.rsplit(".", 1)[-1]
    if last[:1].isupper():
        return _AbsentType(last, (_AbsentClass,), {"_vmcloud_library": library, "__qualname__": qualname})
    return Absent(library, qualname)


def absent(library: str, qualname: str = "") -> Any:
    """A stand-in for ``qualname`` (default: the library itself) of ``library``, which did not import.

    Names starting with a capital letter become classes (usable as base class, in ``except``
    and ``isinstance``), others objects whose attributes are stand-ins; using either for real
    raises :class:`LibraryMissing`.
    """
    if library not in LIBRARIES:
        raise KeyError(f"unknown library {library!r}; add it to LIBRARIES")
    return _stand_in(library, qualname or library)


def is_absent(value: Any) -> bool:
    """Whether ``value`` is a stand-in made by :func:`absent`."""
    return isinstance(value, Absent) or (isinstance(value, type) and issubclass(value, _AbsentClass))
