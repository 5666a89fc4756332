"""fork() after (or during) multi-threaded applies: the child's next multi-threaded apply finishes and gives
the parent's results bit for bit (multiprocessing and DataLoader workers fork a process whose pool has
workers only in the parent). Each child gets a timeout, so a hang fails the test instead of stalling it."""
import multiprocessing
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

import ropekit

TIMEOUT = 30.0
SPEC = ropekit.RopeSpec(128, base=500000.0)


def _inputs():
    # q (1, 4096, 8, 128) and k (1, 4096, 2, 128) f32: about 20 MB of traffic, so two threads are used.
    rng = np.random.default_rng(5)
    return (rng.standard_normal((1, 4096, 8, 128)).astype(np.float32),
            rng.standard_normal((1, 4096, 2, 128)).astype(np.float32))


def _apply(q, k):
    return ropekit.apply_rope(q, k, spec=SPEC, positions=0, num_threads=2)


def _same(got, want):
    return all(np.array_equal(g.view(np.uint32), w.view(np.uint32)) for g, w in zip(got, want))


def _fork():
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork() in a multi-threaded process: that is the case under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _fork_and_check(q, k, want):
    """Forks; the child applies and exits 0 on equal results. Returns the child's exit code (-1: hung)."""
    pid = _fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if _same(_apply(q, k), want) else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.01)


def test_os_fork_after_threaded_apply():
    q, k = _inputs()
    want = _apply(q, k)
    assert not np.array_equal(want[0], q)
    code = _fork_and_check(q, k, want)
    assert code == 0, f"child exit code {code} (-1: hung, killed)"
    assert _same(_apply(q, k), want)  # the parent's pool still works


def test_os_fork_while_another_thread_applies():
    q, k = _inputs()
    want = _apply(q, k)
    stop = threading.Event()
    ran = threading.Event()
    wrong = []

    def busy():  # apply releases the GIL, so the forks below land during its pool runs
        while not stop.is_set():
            if not _same(_apply(q, k), want):
                wrong.append(1)
            ran.set()

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        assert ran.wait(TIMEOUT)
        codes = [_fork_and_check(q, k, want) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert codes == [0] * 5, f"child exit codes {codes} (-1: hung, killed)"
    assert not wrong


def _check_in_child(q, k, want):
    if not _same(_apply(q, k), want):
        raise SystemExit(1)


def _apply_in_worker(_):
    return _apply(*_inputs())


@pytest.fixture
def fork_context():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield multiprocessing.get_context("fork")


def test_multiprocessing_fork_process(fork_context):
    q, k = _inputs()
    want = _apply(q, k)
    p = fork_context.Process(target=_check_in_child, args=(q, k, want))
    p.start()
    p.join(TIMEOUT)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail(f"child hung (killed after {TIMEOUT:.0f} s)")
    assert p.exitcode == 0


def test_multiprocessing_fork_pool(fork_context):
    want = _apply(*_inputs())
    with fork_context.Pool(2) as pool:
        try:
            outs = pool.map_async(_apply_in_worker, range(2)).get(TIMEOUT)
        except multiprocessing.TimeoutError:
            pytest.fail(f"pool workers hung (terminated after {TIMEOUT:.0f} s)")
    assert all(_same(out, want) for out in outs)
