"""One module of CPython's test.test_asyncio on one loop (tools/asyncio-suite).

    python _asyncio_suite_worker.py --loop stock|ours --module NAME --out FILE
                                    [--skip ID ...] [--test-timeout S]

Runs the unittest module ``test.test_asyncio.NAME`` in this interpreter and
appends one JSON line per event to FILE, flushed at once, so that the driver
still knows what happened if this process hangs or dies:

    {"start": ID}                     before each test
    {"id": ID, "outcome": OUTCOME}    after it: pass, fail, error, skip,
                                      xfail, xpass

With ``--loop ours`` the stdlib's loop is replaced, *before* the test module
is imported (modules subclass it at import time), wherever the tests and
asyncio find it: ``asyncio.SelectorEventLoop`` (and its aliases in
``asyncio.unix_events``, ``asyncio.EventLoop`` on 3.13+), the default
policy's loop factory (so ``asyncio.new_event_loop()``, ``asyncio.run()``,
``asyncio.Runner`` and the tests' own loop creation make ours).  With
``--selectors`` (the driver's default) the stdlib ``selectors`` classes are
replaced by fastselectors' too, so the tests that build a loop over an
explicit ``selectors.EpollSelector()``/``PollSelector()``/``SelectSelector()``
run our loop over our selectors.

A test still running after --test-timeout seconds makes faulthandler dump
the stacks and exit: the driver records it as a hang and resumes after it.
"""

import argparse
import faulthandler
import json
import signal
import sys
import time
import unittest


def install_ours(replace_selectors):
    import asyncio
    import selectors

    import fastselectors
    import fastselectors.asyncio as fsasyncio

    ours = fsasyncio.EventLoop
    if replace_selectors:
        for name in ("DefaultSelector", "EpollSelector", "PollSelector",
                     "SelectSelector"):
            if hasattr(selectors, name) and hasattr(fastselectors, name):
                setattr(selectors, name, getattr(fastselectors, name))
    asyncio.SelectorEventLoop = ours
    if sys.platform != "win32":
        from asyncio import unix_events
        unix_events.SelectorEventLoop = ours
        unix_events._UnixSelectorEventLoop = ours
        unix_events._UnixDefaultEventLoopPolicy._loop_factory = ours
        if hasattr(unix_events, "EventLoop"):           # 3.13+
            unix_events.EventLoop = ours
    if hasattr(asyncio, "EventLoop"):
        asyncio.EventLoop = ours
    # 3.14+: the default policy lives in asyncio.events.
    policy_cls = getattr(asyncio.events, "_DefaultEventLoopPolicy", None)
    if policy_cls is not None and getattr(policy_cls, "_loop_factory",
                                          None) is not None:
        policy_cls._loop_factory = ours
    return "{} on tier {}".format(ours.__qualname__, fastselectors.BACKEND)


class RecordingResult(unittest.TextTestResult):
    """Writes each test's start and outcome to the --out file at once."""

    def __init__(self, out, test_timeout, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._out = out
        self._test_timeout = test_timeout
        self._outcomes = {}

    def _emit(self, record):
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def startTest(self, test):
        self._emit({"start": test.id()})
        self._outcomes[test.id()] = "pass"
        if self._test_timeout:
            faulthandler.dump_traceback_later(self._test_timeout, exit=True)
        super().startTest(test)

    def _set(self, test, outcome):
        # Worst outcome wins (subtests report several).
        rank = ["pass", "skip", "xfail", "xpass", "fail", "error"]
        tid = test.id()
        old = self._outcomes.get(tid, "pass")
        if rank.index(outcome) >= rank.index(old):
            self._outcomes[tid] = outcome

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._set(test, "error")
        else:   # setUpClass/tearDownModule: a _ErrorHolder
            self._emit({"id": test.id(), "outcome": "error"})

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "fail")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._set(test, "fail" if issubclass(err[0],
                                                 test.failureException)
                      else "error")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if isinstance(test, unittest.TestCase):
            self._set(test, "skip")
        else:
            self._emit({"id": test.id(), "outcome": "skip"})

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "xpass")

    def stopTest(self, test):
        super().stopTest(test)
        if self._test_timeout:
            faulthandler.cancel_dump_traceback_later()
        self._emit({"id": test.id(),
                    "outcome": self._outcomes.pop(test.id(), "pass")})


def iter_tests(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from iter_tests(test)
        else:
            yield test


def filtered(suite, skip, only):
    """The same suite tree without the tests in *skip* (only those in
    *only*, if given): class fixtures run as usual for the rest."""
    new = unittest.TestSuite()
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            sub = filtered(test, skip, only)
            if sub.countTestCases():
                new.addTest(sub)
        elif test.id() not in skip and (only is None or test.id() in only):
            new.addTest(test)
    return new


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=("stock", "ours"), required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--skip", action="append", default=[])
    parser.add_argument("--only", action="append", default=None)
    parser.add_argument("--selectors", action="store_true")
    parser.add_argument("--test-timeout", type=float, default=0)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()

    faulthandler.enable()
    # A process started in the background of a non-interactive shell
    # inherits SIGINT ignored, and then _thread.interrupt_main() (used by
    # test_runners and others) does nothing: those tests would hang.  Run
    # them as a foreground interpreter would.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    what = "stock"
    if args.loop == "ours":
        what = install_ours(args.selectors)
    loader = unittest.TestLoader()
    module = "test.test_asyncio." + args.module
    try:
        suite = loader.loadTestsFromName(module)
    except unittest.SkipTest as exc:        # e.g. test_windows_events
        with open(args.out, "a") as out:
            for record in ({"loop": what, "module": module,
                            "python": sys.version.split()[0]},
                           {"id": module, "outcome": "skip",
                            "reason": str(exc)},
                           {"done": 0, "ran": 0}):
                out.write(json.dumps(record) + "\n")
        return 0
    if args.list:
        for test in iter_tests(suite):
            print(test.id())
        return 0
    suite = filtered(suite, set(args.skip),
                     set(args.only) if args.only is not None else None)
    with open(args.out, "a") as out:
        out.write(json.dumps({"loop": what, "module": module,
                              "python": sys.version.split()[0]}) + "\n")
        out.flush()
        runner = unittest.TextTestRunner(
            stream=sys.stderr, verbosity=0,
            resultclass=lambda *a, **k: RecordingResult(
                out, args.test_timeout, *a, **k))
        t0 = time.monotonic()
        result = runner.run(suite)
        done = {"done": time.monotonic() - t0, "ran": result.testsRun}
        native = sys.modules.get("fastselectors._native")
        if args.loop == "ours" and hasattr(native, "aio_stats"):
            done["engine"] = native.aio_stats()
        out.write(json.dumps(done) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
