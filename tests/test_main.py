"""``python -m fastselectors``: the quick benchmark a new user runs first
(README).  Its numbers are not checked (benchmarks are programs); that it
runs, says which tier is active, and needs nothing POSIX-only at import (the
wheels target Windows too) is."""

import subprocess
import sys

import fastselectors

# resource is POSIX only: on Windows "import resource" fails.  Simulate it.
NO_RESOURCE = ("import runpy, sys; sys.modules['resource'] = None; "
               "sys.argv = ['fastselectors'] + sys.argv[1:]; "
               "runpy.run_module('fastselectors', run_name='__main__')")


def run(*args, program=None):
    argv = [sys.executable] + (["-c", program] if program
                               else ["-m", "fastselectors"]) + list(args)
    proc = subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quick_benchmark_runs_without_posix_only_modules():
    """One run (it takes seconds), with ``resource`` unimportable."""
    out = run("--fds", "16", "--rounds", "1", program=NO_RESOURCE)
    assert "tier: {}".format(fastselectors.BACKEND) in out
    assert "W1: select(0) with 16 ready fds" in out
    assert "PollSelector" in out or "SelectSelector" in out
