"""Choosing the tier: FASTSELECTORS_BACKEND forces one, and fails loudly."""

import os
import platform
import subprocess
import sys

import pytest

import fastselectors
from fastselectors import _backend

ENV_VAR = "FASTSELECTORS_BACKEND"

PROBE = """
import fastselectors
print(fastselectors.BACKEND)
for name in ("EpollSelector", "PollSelector", "SelectSelector"):
    cls = getattr(fastselectors, name, None)
    if cls is not None:
        with cls() as sel:
            assert sel.select(0) == [], name
print("ok")
"""


def python(code, backend):
    """Run ``python -c code`` with this process's sys.path and
    FASTSELECTORS_BACKEND=*backend* (None: unset)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop(ENV_VAR, None)
    if backend is not None:
        env[ENV_VAR] = backend
    return subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)


def test_an_unknown_tier_fails_loudly_with_importerror():
    proc = python("import fastselectors", "bogus")
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "bogus" in proc.stderr
    assert ENV_VAR in proc.stderr
    assert "unknown tier" in proc.stderr


def test_forcing_pure_works():
    proc = python(PROBE, "pure")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["pure", "ok"]


@pytest.mark.parametrize("tier", _backend.TIERS)
def test_forcing_a_tier_loads_it_or_fails_loudly(tier):
    proc = python(PROBE, tier)
    if tier in _backend.available_tiers():
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [tier, "ok"]
    else:
        assert proc.returncode != 0
        assert "ImportError" in proc.stderr
        assert "{}={}".format(ENV_VAR, tier) in proc.stderr


def test_an_empty_variable_means_the_automatic_choice():
    unset = python(PROBE, None)
    empty = python(PROBE, "")
    assert unset.returncode == 0, unset.stderr
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == unset.stdout


def test_the_automatic_choice_is_the_fastest_available_tier():
    proc = python(PROBE, None)
    assert proc.returncode == 0, proc.stderr
    order = _backend.TIERS
    if platform.python_implementation() != "CPython":
        order = ("cffi", "pure")   # a C extension is slow under cpyext
    available = _backend.available_tiers()
    expected = next(tier for tier in order if tier in available)
    assert proc.stdout.split() == [expected, "ok"]


def test_available_tiers_contains_pure_and_the_active_tier():
    tiers = _backend.available_tiers()
    assert "pure" in tiers
    assert fastselectors.BACKEND in tiers
    assert list(tiers) == [t for t in _backend.TIERS if t in tiers], \
        "available_tiers() lists the tiers fastest first"
