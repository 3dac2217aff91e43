"""How a fine-tuning run splits its work over the processes of ``accelerate launch``.

A round's global batch of n samples (prompts x samples per prompt, in that order) is cut into
contiguous shards, one per process, in process order: process k of P holds rows
[k n / P, (k + 1) n / P) (``numpy.array_split``). Every random draw is made for the whole batch
from generators seeded by (seed, step) and sliced (:func:`textnorm.ddim.sample`'s ``rows``), so
the samples of a row, and hence the global batch, do not depend on P. Per-sample results
(rewards, gold, image statistics, KL) are gathered in process order, which restores the global
order, before anything that depends on other samples (per-prompt advantages, top-fraction
selection, logged means). Gradients are averaged by DDP over processes that hold equally many
samples per minibatch, so each update is the gradient of the global minibatch's mean loss.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T", np.ndarray, torch.Tensor, dict)


def shard(n: int, processes: int, index: int) -> slice:
    """Rows of a batch of n held by process ``index`` of ``processes`` (contiguous, in order)."""
    if n < processes:
        raise ValueError(f"a batch of {n} samples cannot be split over {processes} processes")
    size, extra = divmod(n, processes)  # the first `extra` processes hold one row more
    start = index * size + min(index, extra)
    return slice(start, start + size + (index < extra))


def local_rows(rows: np.ndarray, sl: slice) -> np.ndarray:
    """The global row indices ``rows`` that fall in this process's shard ``sl``, as local indices."""
    return rows[(rows >= sl.start) & (rows < sl.stop)] - sl.start


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Random minibatches of rows 0..n-1 (``batch_size`` divides n) that split equally over any
    number of processes P dividing ``batch_size``: the batch is cut into ``batch_size`` windows of
    M = n / batch_size consecutive rows, and each window sends one row to each of the M minibatches
    (a random permutation per window). A process's shard (n / P consecutive rows) is a union of
    whole windows, so it holds batch_size / P rows of every minibatch, and the minibatches do not
    depend on P. Returns M arrays of global row indices."""
    if batch_size < 1 or n % batch_size:
        raise ValueError(f"a batch of {n} does not split into minibatches of {batch_size}")
    m = n // batch_size
    slot = torch.rand((batch_size, m), generator=generator).argsort(dim=1).numpy()  # window w -> rows by minibatch
    windows = np.arange(batch_size) * m
    return [windows + slot[:, k] for k in range(m)]


def gather(accelerator: Any, local: T) -> T:
    """Concatenate every process's ``local`` (numpy array, CPU tensor, or a dict of them, gathered
    in one collective) in process order."""
    if accelerator.num_processes == 1:
        return local
    parts = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(parts, local)

    def cat(xs: list) -> np.ndarray | torch.Tensor:
        return torch.cat(xs) if isinstance(xs[0], torch.Tensor) else np.concatenate(xs)

    return {k: cat([q[k] for q in parts]) for k in local} if isinstance(local, dict) else cat(parts)


def resolve_device(accelerator: Any, name: str) -> torch.device:
    """One process: the configured device. Several: the device accelerate assigned to this
    process (e.g. cuda:k), which must be of the configured type."""
    want = torch.device(name)
    if accelerator.num_processes == 1:
        return want
    got = accelerator.device
    if want.type != got.type or want.index not in (None, got.index):
        raise ValueError(
            f"device {name!r} with {accelerator.num_processes} processes: each process uses the device "
            f"accelerate assigns it ({got} for process {accelerator.process_index}); pass "
            f"--device {got.type}"
        )
    return got
