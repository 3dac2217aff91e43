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

import numpy as np
import torch


def shard(n: int, processes: int, index: int) -> slice:
    """Rows of a batch of n held by process ``index`` of ``processes`` (contiguous, in order)."""
    if n < processes:
        raise ValueError(f"a batch of {n} samples cannot be split over {processes} processes")
    bounds = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(n), processes)])
    return slice(int(bounds[index]), int(bounds[index + 1]))


def gather(accelerator, local):
    """Concatenate every process's ``local`` (numpy array or CPU tensor) in process order."""
    if accelerator.num_processes == 1:
        return local
    parts = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(parts, local)
    return torch.cat(parts) if isinstance(local, torch.Tensor) else np.concatenate(parts)


def resolve_device(accelerator, name: str) -> torch.device:
    """One process: the configured device. Several: the device accelerate assigned to this
    process (e.g. cuda:k), which must be of the configured type."""
    want = torch.device(name)
    if accelerator.num_processes == 1:
        return want
    got = accelerator.device
    if want.type != got.type or want.index not in (None, got.index):
        raise ValueError(f"device {name!r} with {accelerator.num_processes} processes: each process uses the device "
                         f"accelerate assigns it ({got} for process {accelerator.process_index}); pass "
                         f"--device {got.type}")
    return got
