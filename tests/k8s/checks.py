"""What the scripts of tests/k8s share: a failed check, and the loop that runs a list of test
functions, printing PASS or FAIL for each and a closing "N passed, N failed"."""

import time
import traceback


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def run(tests, *args, expected=()):
    """Runs test(*args) for each of `tests`. A Failure, or an exception of a type in `expected`,
    prints its message; any other exception its traceback. Returns the number that failed."""
    passed = failed = 0
    for t in tests:
        ts = time.monotonic()
        try:
            t(*args)
            passed += 1
            print("PASS %s (%.1fs)" % (t.__name__, time.monotonic() - ts))
        except (Failure,) + tuple(expected) as e:
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e))
        except Exception:
            failed += 1
            print("FAIL %s:\n%s" % (t.__name__, traceback.format_exc()))
    print("%d passed, %d failed" % (passed, failed))
    return failed
