"""Loading a user's adapter factory from ``pkg.mod:factory`` without running anything yet."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from lockchaos.backends.base import Capabilities, ConfigurationError, LockBackend

AdapterFactory = Callable[[str], LockBackend]


def load_factory(spec: str) -> AdapterFactory:
    """Import ``pkg.mod:factory``; any failure is a one-line ConfigurationError (exit status 2)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"--adapter must look like pkg.mod:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # a module that calls sys.exit() on import is broken too, not done
        raise ConfigurationError(f"cannot import adapter module {module_name!r}: "
                                 f"{type(exc).__name__}: {exc}") from None
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"adapter module {module_name!r} has no {attr!r}") from None
        except Exception as exc:  # a module-level __getattr__ or a property that raises
            raise ConfigurationError(f"looking up {attr!r} in adapter module {module_name!r} raised "
                                     f"{type(exc).__name__}: {exc}") from None
    if not callable(obj):
        raise ConfigurationError(f"adapter factory {spec!r} is not callable")
    factory: AdapterFactory = obj
    return factory


def checked_backend(factory: AdapterFactory, url: str, spec: str) -> LockBackend:
    """Call the factory and make sure it returned something shaped like a LockBackend."""
    backend = factory(url)
    if not isinstance(backend, LockBackend):
        raise ConfigurationError(
            f"adapter factory {spec!r} returned {type(backend).__name__}, which is not a LockBackend "
            "(needs name, capabilities, acquire, renew, release, holder, close)"
        )
    # The checkers and the contract judge a lock by its declared capabilities: a declaration of another
    # type would fail deep inside a run (an infrastructure error per scenario) instead of here, as bad input.
    caps, name = backend.capabilities, backend.name
    if not isinstance(caps, Capabilities) or not isinstance(name, str):
        raise ConfigurationError(
            f"adapter factory {spec!r} returned a {type(backend).__name__} whose capabilities is a "
            f"{type(caps).__name__} and name a {type(name).__name__} (needs lockchaos Capabilities and a str)")
    return backend
