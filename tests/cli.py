"""Running LeRobot's console scripts offline from the tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from diffusion_plus_tools.lerobot_cli import capture, default_bin, train_flags

BIN = default_bin()


def run_cli(tool: str, *args: str, timeout: int = 600, threads: int | None = 1) -> subprocess.CompletedProcess:
    # threads=1 by default: small models on 2 cores, one thread each avoids contention between test processes
    return capture([str(BIN / tool), *args], threads=threads, timeout=timeout)


def train_args(policy_type: str | None, dataset: Path, output_dir: Path, steps: int, *extra: str) -> list[str]:
    return train_flags(policy_type, dataset, output_dir, steps=steps, batch_size=16, save_freq=steps,
                       num_workers=0, log_freq=10, seed=1, extra=extra)


SMALL_ARGS = {
    "diffusion_plus": ["--policy.down_dims=[32,64,128]", "--policy.diffusion_step_embed_dim=32"],
    "diffusion_plus_transformer": ["--policy.n_layer=2", "--policy.n_emb=64", "--policy.n_head=4"],
}
