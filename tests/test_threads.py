"""CPU threads chosen once per entry point (minigpt4/common/threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt4.common.errors import UserError
from minigpt4.common.threads import THREADS_ENV, configure_threads, plan_threads, usable_cores

REPO = Path(__file__).resolve().parents[1]


def test_auto_plan_leaves_a_core_to_each_data_loader_worker():
    assert (plan_threads(1, cores=2, env={}).threads, plan_threads(1, cores=2, env={}).workers) == (1, 1)
    assert (plan_threads(2, cores=16, env={}).threads, plan_threads(2, cores=16, env={}).workers) == (14, 2)
    assert (plan_threads(0, cores=4, env={}).threads, plan_threads(0, cores=4, env={}).source) == (4, "auto")


def test_workers_are_capped_to_the_cores_minus_the_main_process():
    plan = plan_threads(4, cores=2, env={})
    assert (plan.threads, plan.workers) == (1, 1)
    assert plan_threads(2, cores=1, env={}).workers == 0  # one core: load in the main process


def test_overrides_config_then_our_env_then_omp_env():
    env = {THREADS_ENV: "3", "OMP_NUM_THREADS": "5"}
    assert (plan_threads(1, threads=2, cores=8, env=env).threads, plan_threads(1, threads=2, cores=8, env=env).source) \
        == (2, "config/flag")
    assert (plan_threads(1, cores=8, env=env).threads, plan_threads(1, cores=8, env=env).source) == (3, f"${THREADS_ENV}")
    assert plan_threads(1, cores=8, env={"OMP_NUM_THREADS": "5"}).threads == 5


def test_torchrun_processes_share_the_machines_cores():
    # 4 processes on 16 cores: 4 cores each, one of them for the data-loader worker
    assert plan_threads(1, env={"LOCAL_WORLD_SIZE": "4"}).cores == max(1, usable_cores() // 4)
    plan = plan_threads(1, cores=4, env={"LOCAL_WORLD_SIZE": "4"})  # explicit cores are taken as given
    assert (plan.threads, plan.workers) == (3, 1)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_names_the_setting(value):
    with pytest.raises(UserError, match=THREADS_ENV):
        plan_threads(1, cores=2, env={THREADS_ENV: value})


def test_configure_threads_sets_torchs_intra_op_pool():
    before = torch.get_num_threads()
    try:
        plan = configure_threads(num_workers=0, threads=1)
        assert torch.get_num_threads() == plan.threads == 1
    finally:
        torch.set_num_threads(before)


def test_importing_the_package_makes_openmp_threads_wait_passively():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import minigpt4, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # a user's choice stands
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


def test_every_console_command_sets_its_threads():
    """Each console script's module calls configure_threads (the one decision, made by every entry point)."""
    import importlib
    import inspect
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    missing = []
    for command, target in scripts.items():
        module, func = target.split(":")
        main = getattr(importlib.import_module(module), func)
        if "configure_threads(" not in Path(inspect.getsourcefile(main)).read_text():
            missing.append(command)
    assert not missing, f"these commands never call minigpt4.common.threads.configure_threads: {missing}"
