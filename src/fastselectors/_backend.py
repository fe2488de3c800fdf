"""The only place that chooses a tier (native, cffi or pure).

``FASTSELECTORS_BACKEND=native|cffi|pure`` forces one and fails loudly
(ImportError) if it cannot be loaded; otherwise the fastest available wins:
native on CPython, cffi on PyPy (cffi is PyPy's fast FFI; a C extension
runs there through the slow cpyext layer, so we do not build one), and pure
wherever nothing was compiled.
"""

from __future__ import annotations

import os
import selectors as _stdlib
import sys
import warnings

from . import _epoll_core
from ._select_core import SelectCore
from ._selectors import make_selector, replaced

TYPE_CHECKING = False       # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from selectors import BaseSelector
    from types import ModuleType

    from . import _kernel_cffi, _kernel_stdlib, _native
    from ._types import Core, KernelFdCore

    # _core_classes() finds the cores with getattr(): have the type checker
    # hold every tier's cores to the interface here instead.
    _CORES: tuple[type[Core], ...] = (
        _native.PollCore, _kernel_cffi.PollCore, _kernel_stdlib.PollCore,
        SelectCore)
    _EPOLL_CORES: tuple[type[KernelFdCore], ...] = (
        _native.EpollCore, _kernel_cffi.EpollCore, _kernel_stdlib.EpollCore)

TIERS = ("native", "cffi", "pure")
_epoll_core.on_replaced = replaced     # the Python tiers' hook
ENV_VAR = "FASTSELECTORS_BACKEND"


def _core_classes(tier: str) -> dict[str, type[Core]]:
    """Return {"epoll": cls, "poll": cls, "select": cls} for *tier*; a
    missing key means this platform has no such kernel API."""
    mod: ModuleType
    if tier == "native":
        if sys.implementation.name != "cpython":
            raise ImportError("the native tier is a CPython extension; "
                              "this interpreter uses the cffi tier")
        from . import _native as mod
        mod.set_rebuild_hook(replaced)
    elif tier == "cffi":
        try:
            from . import _kernel_cffi as mod
        except ImportError as exc:
            raise ImportError(
                "the cffi tier needs its compiled module and the cffi "
                "runtime (pip install 'fastselectors[cffi]'): {}"
                .format(exc)) from exc
    elif tier == "pure":
        from . import _kernel_stdlib as mod
    else:
        raise ImportError("{}={!r}: unknown tier, expected one of {}"
                          .format(ENV_VAR, tier, ", ".join(TIERS)))
    cores: dict[str, type[Core]] = {"select": SelectCore}
    for name, attr in (("epoll", "EpollCore"), ("poll", "PollCore")):
        core = getattr(mod, attr, None)
        if core is not None and _works(core):
            cores[name] = core
    return cores


def _works(core_cls: type[Core]) -> bool:
    """Like the stdlib's ``_can_use``: the API may exist but the kernel (or
    a seccomp filter) may refuse it."""
    try:
        core = core_cls()
        core.select(0)
        core.close()
    except OSError:
        return False
    return True


def selector_classes(tier: str) -> dict[str, type[BaseSelector]]:
    """Build the public selector classes of *tier* as a dict name -> class.

    Raises ImportError if the tier cannot be loaded here.
    """
    classes: dict[str, type[BaseSelector]] = {
        name.capitalize() + "Selector": make_selector(
            name.capitalize() + "Selector", core)
        for name, core in _core_classes(tier).items()}
    # Platform selectors we have no core for are the stdlib's own classes,
    # and the default where the stdlib's is: never worse than its choice.
    default = classes.get("EpollSelector") or classes.get("PollSelector") \
        or classes["SelectSelector"]
    for name in ("KqueueSelector", "DevpollSelector"):
        if hasattr(_stdlib, name):
            classes[name] = getattr(_stdlib, name)
            if _stdlib.DefaultSelector is classes[name]:
                default = classes[name]
    classes["DefaultSelector"] = default
    return classes


def available_tiers() -> list[str]:
    """The tiers that load on this interpreter, fastest first."""
    found: list[str] = []
    for tier in TIERS:
        try:
            _core_classes(tier)
        except ImportError:
            continue
        found.append(tier)
    return found


def choose() -> tuple[str, dict[str, type[BaseSelector]]]:
    """Return (tier, classes) for this process."""
    def why(tier: str, exc: ImportError) -> str:
        # A missing compiled module makes Python say "cannot import name
        # ... partially initialized module ... circular import": name the
        # real cause instead (a build without a compiler, or pip reusing
        # the wheel it cached from one), and the fix.
        import importlib.util
        name = {"native": "_native", "cffi": "_cffi_epoll"}.get(tier)
        if name and importlib.util.find_spec("fastselectors." + name) is None:
            return ("the compiled module fastselectors.{} is not installed "
                    "(it could not be compiled when fastselectors was "
                    "installed: no working C compiler or Python headers). "
                    "Fix: install them, then run: pip install --no-cache-dir "
                    "--force-reinstall fastselectors (--no-cache-dir: pip "
                    "would reuse the build it cached without them)"
                    .format(name))
        return str(exc)

    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        try:
            return forced, selector_classes(forced)
        except ImportError as exc:
            raise ImportError(
                "{}={} was requested but that tier cannot be loaded: {}"
                .format(ENV_VAR, forced, why(forced, exc))) from exc
    cpython = sys.implementation.name == "cpython"
    order = TIERS if cpython else ("cffi", "pure")
    for tier in order:
        try:
            classes = selector_classes(tier)
        except ImportError as exc:
            if tier == order[0] and os.name == "posix":
                # The tier every wheel and every sdist build with a compiler
                # has on this interpreter (native on CPython, cffi on PyPy):
                # its absence is a broken install, so say it loudly.
                warnings.warn(
                    "fastselectors: the {} tier failed to load: {}. Falling "
                    "back to a slower tier (fastselectors.BACKEND says "
                    "which); set {}=pure to silence this."
                    .format(tier, why(tier, exc), ENV_VAR),
                    RuntimeWarning, stacklevel=3)
            continue
        return tier, classes
    raise AssertionError("unreachable: the pure tier always loads")
