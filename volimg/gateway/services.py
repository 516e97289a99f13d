"""openstacksdk's services that volimg never calls, loaded on first use instead of at start.

``import openstack`` imports the description of every service openstacksdk knows
(``openstack/_services_mixin.py``), and each description imports its proxy, which
imports every resource module of its service: networking, compute, object storage,
orchestration, bare metal, DNS, load balancers and more. volimg talks to Keystone,
Glance and Cinder only; the rest is about a twentieth of ``volimg stores``'s start-up and
a megabyte and a half of memory, for nothing (docs/performance.md).

``defer_unused_services`` puts a finder before Python's own for the modules that
describe those services (``openstack/<service>/<service>_service.py``, one class each).
Each gets a stand-in module whose class is a ``ServiceDescription`` like the real one;
the first time a connection asks for the service (``conn.network``), it runs the real
module and hands over to the real description, so a caller that does use the service
sees no difference but the moment it is loaded. A module that is not laid out so (a
later openstacksdk) is imported as usual: the finder only ever defers, never replaces.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

#: The services volimg calls: their descriptions load with openstacksdk, as usual.
USED = frozenset({"identity", "image", "block_storage"})


def defer_unused_services() -> None:
    """Have the services volimg does not call load on first use (once per process).

    To be called before openstacksdk is first imported; afterwards it changes nothing.
    """
    if "openstack._services_mixin" in sys.modules:
        return
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())


def described_service(fullname: str) -> str | None:
    """The service of a module ``openstack.<service>.<service>_service``, else None."""
    parts = fullname.split(".")
    if len(parts) == 3 and parts[0] == "openstack" and parts[2] == f"{parts[1]}_service":
        return parts[1]
    return None


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds the description modules of unused services, and gives them a stand-in."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        service = described_service(fullname)
        if service is None or service in USED:
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None or real.loader is None:
            return None  # not there: Python says so as usual
        return importlib.util.spec_from_loader(fullname, _StandInLoader(real))


class _StandInLoader(importlib.abc.Loader):
    """Makes the stand-in module: its ``<Name>Service`` classes are made when asked for."""

    def __init__(self, real: importlib.machinery.ModuleSpec) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # Python's default module

    def exec_module(self, module: ModuleType) -> None:
        real = self.real
        loaded: list[ModuleType] = []

        def real_module() -> ModuleType:
            """The real description module, run once (not in sys.modules: the stand-in is)."""
            if not loaded:
                found = importlib.util.module_from_spec(real)
                assert real.loader is not None  # checked by the finder
                real.loader.exec_module(found)
                loaded.append(found)
            return loaded[0]

        def stand_in(name: str) -> type:
            # PEP 562: called for a name the module lacks, as _services_mixin's
            # ``network_service.NetworkService``. Descriptions are the *Service classes.
            if not name.endswith("Service") or name.startswith("_"):
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            made = _stand_in_class(name, real_module)
            setattr(module, name, made)
            return made

        module.__getattr__ = stand_in  # type: ignore[method-assign]


def _stand_in_class(name: str, real_module: Any) -> type:
    """A ``ServiceDescription`` that hands over to the real class ``name`` on first use."""
    from openstack import service_description

    base: Any = service_description.ServiceDescription

    class StandIn(base):  # type: ignore[misc]
        """Stands for the real description until a connection asks for the service."""

        def __init__(self, service_type: str, *args: Any, **kwargs: Any) -> None:
            # The base keeps service_type, aliases and all_types, which is all it reads
            # before a connection asks; supported_versions stays empty until then.
            super().__init__(service_type)
            self._arguments = (service_type, args, kwargs)
            self._real: Any = None

        def __get__(self, instance: Any, owner: Any = None) -> Any:
            if instance is None:
                return self
            if self._real is None:
                service_type, args, kwargs = self._arguments
                self._real = getattr(real_module(), name)(service_type, *args, **kwargs)
            return self._real.__get__(instance, owner)

    StandIn.__name__ = StandIn.__qualname__ = name
    return StandIn
