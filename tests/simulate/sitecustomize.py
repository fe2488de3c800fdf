"""Simulated platforms for the test suite, in every process it starts.

With this directory on ``PYTHONPATH`` and
``FASTSELECTORS_SIMULATE_PLATFORM`` set, each Python process (pytest, and
every interpreter the tests spawn, which inherit both) changes the
``select`` module at startup, before ``selectors``, ``asyncio`` or
``fastselectors`` import it (``platforms.py`` says how).  The
``sitecustomize`` this one shadows, if any (a distribution's), still runs.
"""

import os


def _run_shadowed():
    import importlib.machinery
    import importlib.util
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if os.environ.get("FASTSELECTORS_SIMULATE_PLATFORM", "").strip():
    import platforms
    platforms.apply(os.environ["FASTSELECTORS_SIMULATE_PLATFORM"].strip())
_run_shadowed()
