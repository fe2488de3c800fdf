"""Simulated platforms for the test suite, in every process it starts.

With this directory on ``PYTHONPATH`` and
``FASTSELECTORS_SIMULATE_PLATFORM`` set, each Python process (pytest, and
every interpreter the tests spawn, which inherit both) changes the
``select`` module at startup, before ``selectors``, ``asyncio`` or
``fastselectors`` import it (``platforms.py`` says how).  It shadows any
other ``sitecustomize`` (Debian's only installs apport hooks).
"""

import os

if os.environ.get("FASTSELECTORS_SIMULATE_PLATFORM", "").strip():
    import platforms
    platforms.apply(os.environ["FASTSELECTORS_SIMULATE_PLATFORM"].strip())
