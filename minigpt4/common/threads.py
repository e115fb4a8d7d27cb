"""CPU threads that fit the machine as it is: one decision, made once by every entry point.

PyTorch starts one intra-op (OpenMP) thread per core it *sees*, whatever else runs: its
data-loader workers, other jobs on a shared machine. OpenMP threads then busy-wait for each
other, and one lost core slows a step 7-8x instead of 2x (issue 28). So every entry point calls
`configure_threads` once, before any work:

- intra-op threads = the cores this process may use (`os.sched_getaffinity`: a taskset, a cgroup
  cpuset, a Slurm allocation; shared evenly by torchrun's processes on the machine) minus the
  data-loader workers, at least 1;
- data-loader workers = at most the cores minus one (the main process needs one);
- OpenMP threads that wait sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE`): set as a
  default by the package root `minigpt4/__init__.py`, because the OpenMP runtime reads it once,
  when torch is first imported, and inherited by every process an entry point starts.

Overrides, strongest first: the caller's `threads` (a config's `run.num_threads`, a `--threads`
flag), then `$EMOTION_LLAMA_THREADS`, then `$OMP_NUM_THREADS` (the usual knob, honoured as is).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping

from minigpt4.common.errors import UserError

log = logging.getLogger(__name__)

THREADS_ENV = "EMOTION_LLAMA_THREADS"


@dataclass(frozen=True)
class ThreadPlan:
    """What `configure_threads` chose and why (`source` names the setting that decided)."""

    cores: int  # cores this process may run on
    threads: int  # intra-op threads of this process
    workers: int  # data-loader worker processes
    source: str  # "auto", "config/flag", "$EMOTION_LLAMA_THREADS" or "$OMP_NUM_THREADS"

    def describe(self) -> str:
        return (f"{self.threads} intra-op thread(s) ({self.source}), {self.workers} data-loader worker(s), "
                f"{self.cores} usable core(s)")


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS reports one, else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity API
        return max(1, os.cpu_count() or 1)


def _positive(value: str | int, name: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise UserError(f"{name}={value!r} is not a thread count; give a whole number >= 1 (or leave it unset: "
                        "the threads are then chosen from the usable cores)")
    return count


def plan_threads(num_workers: int = 0, threads: int | None = None, cores: int | None = None,
                 env: Mapping[str, str] | None = None) -> ThreadPlan:
    """The thread plan for `num_workers` requested data-loader workers (pure: no side effects)."""
    env = os.environ if env is None else env
    if cores is None:  # torchrun's processes on one machine share its cores
        cores = max(1, usable_cores() // max(1, int(env.get("LOCAL_WORLD_SIZE") or 1)))
    workers = max(0, min(int(num_workers), cores - 1))
    if threads is not None:
        return ThreadPlan(cores, _positive(threads, "threads"), workers, "config/flag")
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        if env.get(name):
            return ThreadPlan(cores, _positive(env[name], name), workers, f"${name}")
    return ThreadPlan(cores, max(1, cores - workers), workers, "auto")


def configure_threads(num_workers: int = 0, threads: int | None = None) -> ThreadPlan:
    """Apply `plan_threads` to this process's intra-op pool and return the plan; entry points use
    `plan.workers` for their data loaders. (Processes an entry point starts decide for themselves:
    a demo step, a torchrun rank; data-loader workers run one thread, as PyTorch sets them.)"""
    import torch  # here, not at the top: the corpus's render workers use `usable_cores` without torch

    plan = plan_threads(num_workers, threads)
    torch.set_num_threads(plan.threads)
    if plan.workers != num_workers:
        log.info("data-loader workers: %d instead of %d (%d usable cores; the main process needs one)",
                 plan.workers, num_workers, plan.cores)
    log.debug("threads: %s", plan.describe())
    return plan
