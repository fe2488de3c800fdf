"""Nothing leaks per call.

Thousands of cycles of each *kind* -- register/select/unregister
(``select``), ``dispatch``, ``modify``, failing calls (``fail``), orphaned
registrations of closed-but-dup'd fds (``orphan``) -- on every selector
class of the active tier must leave nothing behind.  These measures are
taken around a run of cycles, after a warm-up (free lists, buffers and
tables reach their steady size first):

* ``sys.getrefcount`` of the data objects, the file object and the selector:
  exactly unchanged (CPython only: PyPy has no reference counts);
* how many objects the garbage collector tracks (``gc.get_objects()``): at
  most ``gc_slack`` more;
* the heap, over a run of its own: tracemalloc's traced memory on CPython
  (the C cores allocate with PyMem_*, so it sees them), the GC heap on
  PyPy: at most ``traced_slack`` bytes more.  A constant, not a per-cycle
  allowance: a leak of one small object per cycle fails it;
* the RSS (``/proc/self/statm``) of the run's *second half*: at most
  ``rss_slack`` bytes more at the end than at the middle.  The first half
  may still grow (allocator pools settling); a leak grows both halves
  alike;
* the number of open fds (``/proc/self/fd``): unchanged.

No measure involves the wall clock.  ``test_each_check_catches_...`` runs
the same measures over a cycle that also leaks one small thing (an object,
a list, a reference, a page) per cycle and asserts that the matching checks
fail: the thresholds mean something.  What an interpreter cannot measure
is named by the skip of ``test_every_measure_is_taken_here``.

The measures live in ``leakcheck.py``, beside this file.  The long
profile -- a million cycles of each kind per class and per tier, fewer for
the slow kinds -- is ``tools/leak-soak`` (``tools/leak_soak.py``).
"""

import gc
import socket

import pytest

import fastselectors
from leakcheck import (INJECTED, KINDS, QUICK, Rig, count_fds, injected_run,
                       measure, not_measured)


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_no_leak(selector_cls, kind):
    with Rig(selector_cls) as rig:
        report = measure("{} {} {}".format(fastselectors.BACKEND,
                                           rig.name, kind),
                         rig.cycle(kind), rig.watched,
                         QUICK.for_kind(kind))
    failed = report.failed_checks()
    assert not failed, "{}\n{}".format(report.summary(),
                                       "\n".join(failed.values()))


def test_a_selector_never_closed_releases_its_fds_when_collected(
        selector_cls):
    """As a stdlib selector does: a dropped selector closes what it opened
    (the epoll fd, the waker pipe of a blocking poll or select wait) when
    it is collected.  The waker pipes used to stay open for good."""
    if count_fds() is None:
        pytest.skip("no /proc/self/fd to count the open fds")
    a, b = socket.socketpair()
    try:
        gc.collect()
        before = count_fds()
        for _ in range(5):
            sel = selector_cls()
            sel.register(a, fastselectors.EVENT_READ)
            sel.select(0.001)       # blocking: the waker is made
            assert count_fds() > before
            del sel
            gc.collect()
        assert count_fds() == before
    finally:
        a.close()
        b.close()


def test_every_measure_is_taken_here():
    """A skip (shown by -rs) names the measures this interpreter cannot
    take, instead of the leak tests passing silently without them."""
    reasons = not_measured(QUICK)
    if reasons:
        pytest.skip("not measured here: " + "; ".join(reasons))


@pytest.mark.parametrize("leak", sorted(INJECTED))
def test_each_check_catches_one_small_leak_per_cycle(leak):
    report, checks, lacking = injected_run(leak, QUICK)
    if not checks:
        pytest.skip("nothing here can measure this leak: " +
                    "; ".join(not_measured(QUICK)))
    assert checks <= set(report.failed_checks()), report.summary()
