"""Module replacement, as real users do it:

    import sys, fastselectors
    sys.modules["selectors"] = fastselectors

Everything imported after that must get our classes: the stdlib modules that
use selectors (subprocess, socketserver, asyncio) among them.  That holds
only if ``import fastselectors`` itself imports none of them first (on
Python 3.9/3.10 ``import platform`` imported subprocess).  A fresh
interpreter each time, with this test run's interpreter and tier.
"""

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import sys
    import fastselectors
    early = [m for m in ("subprocess", "socketserver", "asyncio")
             if m in sys.modules]
    assert not early, "import fastselectors imported " + ", ".join(early)
    sys.modules["selectors"] = fastselectors

    import asyncio
    import socketserver
    import subprocess

    ours = {getattr(fastselectors, name) for name in fastselectors.__all__
            if name.endswith("Selector") and name != "BaseSelector"}
    assert subprocess._PopenSelector in ours, subprocess._PopenSelector
    assert socketserver._ServerSelector in ours, socketserver._ServerSelector
    loop = asyncio.new_event_loop()
    try:
        assert type(loop._selector) is fastselectors.DefaultSelector, \\
            type(loop._selector)
    finally:
        loop.close()
    out = subprocess.run([sys.executable, "-c", "print('child')"],
                         stdout=subprocess.PIPE, check=True).stdout
    assert out.strip() == b"child", out
    print("ok")
""")


def test_module_replacement_reaches_subprocess_socketserver_asyncio():
    proc = subprocess.run([sys.executable, "-c", PROGRAM],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
