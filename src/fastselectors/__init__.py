"""fastselectors: a faster drop-in for the stdlib ``selectors`` module.

    import fastselectors as selectors

``BACKEND`` names the active tier ("native", "cffi" or "pure").  The names
and their types, for type checkers: ``__init__.pyi``.
"""

from selectors import BaseSelector, SelectorKey, EVENT_READ, EVENT_WRITE

from ._flags import (EDGE, EVENT_PRIORITY, EVENT_RDHUP, EXCLUSIVE, MODIFIERS,
                     ONESHOT, READINESS)
from ._backend import choose as _choose

__version__ = "0.1.0"

# The selector classes are made here, by the tier chosen.
BACKEND, _classes = _choose()
globals().update(_classes)

__all__ = ["BaseSelector", "SelectorKey", "EVENT_READ", "EVENT_WRITE",
           "EVENT_PRIORITY", "EVENT_RDHUP", "EDGE", "ONESHOT", "EXCLUSIVE",
           "READINESS", "MODIFIERS", "BACKEND"]
__all__ += sorted(_classes)
del _choose, _classes
