"""Running independent jobs in worker processes, as the grid and the controls do.

Two worker processes of one torch thread each beat one process of two threads on two cores
(torch's intra-op threads contend). Workers are spawned (not forked: torch and fork do not mix),
each calls ``torch.set_num_threads(1)`` and quiets the libraries' warnings once, and dies with its
parent, even when the parent is killed with SIGKILL (:func:`die_with_parent`). With one worker
the jobs run in this process, one after the other, with the same thread setting.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")


def die_with_parent(parent: int) -> None:
    """A worker's initializer: end this process when the parent ``parent`` dies, even by kill -9
    (which runs no clean-up in the parent). On Linux the kernel sends SIGKILL (PR_SET_PDEATHSIG);
    elsewhere, and as a fallback, a daemon thread polls the parent once a second."""
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent:  # the parent died before the call above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _one_thread() -> None:
    import torch

    from textnorm.quiet import quiet_libraries

    torch.set_num_threads(1)
    quiet_libraries()


def _init_worker(parent: int) -> None:
    die_with_parent(parent)
    _one_thread()


def _in_this_process(fn: Callable[[Any], Any], job: Any) -> Any:
    import torch

    threads = torch.get_num_threads()
    _one_thread()
    try:
        return fn(job)
    finally:
        torch.set_num_threads(threads)  # the caller's (e.g. a notebook's) setting, as it was


def run_jobs(
    fn: Callable[[J], R],
    jobs: Iterable[J],
    workers: int = 2,
    ordered: bool = False,
    progress: bool = False,
    desc: str | None = None,
) -> Iterator[R]:
    """``fn(job)`` for every job, in ``workers`` spawned processes (``fn`` must be importable: a
    module-level function), yielded as they end (``ordered``: in the jobs' order)."""
    jobs = list(jobs)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = functools.partial(tqdm, total=len(jobs), disable=not progress, desc=desc)
    if workers == 1 or len(jobs) <= 1:
        yield from bar(_in_this_process(fn, job) for job in jobs)
        return
    context = mp.get_context("spawn")
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        results = (pool.imap if ordered else pool.imap_unordered)(fn, jobs, chunksize=1)
        yield from bar(results)
