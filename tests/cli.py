"""Running LeRobot's console scripts offline from the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(tool: str, *args: str, timeout: int = 600, threads: int | None = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    if threads:  # small models on 2 cores: one thread each avoids contention between test processes
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run(
        [str(BIN / tool), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def train_args(policy_type: str, dataset: Path, output_dir: Path, steps: int, *extra: str) -> list[str]:
    return [
        f"--policy.type={policy_type}",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--dataset.repo_id=local/pusht",
        f"--dataset.root={dataset}",
        f"--steps={steps}",
        "--batch_size=16",
        "--num_workers=0",
        f"--save_freq={steps}",
        "--env_eval_freq=0",
        "--log_freq=10",
        f"--output_dir={output_dir}",
        "--seed=1",
        *extra,
    ]


SMALL_ARGS = {
    "diffusion_plus": ["--policy.down_dims=[32,64,128]", "--policy.diffusion_step_embed_dim=32"],
    "diffusion_plus_transformer": ["--policy.n_layer=2", "--policy.n_emb=64", "--policy.n_head=4"],
}
