"""The rows of benchmarks/results/pusht_success.json: one per evaluated checkpoint, CPU and GPU runs alike."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

DIFFUSION_TYPES = ("diffusion_plus", "diffusion_plus_transformer", "diffusion")
# What makes two rows the same run and evaluation: a new row replaces an old one with the same values.
ROW_KEY = ("policy", "seed", "steps", "of_steps", "batch_size", "down_dims", "device", "obs", "n_action_steps",
           "extra_flags", "eval_seed")


def make_row(policy: str, overall: dict, *, steps: int, of_steps: int, batch_size: int, seed: int, sampler: str,
             eval_seed: int, train_wall_s: int | None, down_dims: list[int] | None, n_action_steps: int,
             extra_flags: str, streaming: bool, device: str, obs: str, episodes: int | None,
             note: str | None = None) -> dict:
    """One row from lerobot-eval's `overall` block (eval_info.json) and how the checkpoint was trained."""
    row = {
        "policy": policy, "pc_success": round(overall["pc_success"], 2),  # lerobot-eval's 28.000000000000004
        "avg_max_reward": round(overall["avg_max_reward"], 4),
        "steps": steps, "of_steps": of_steps, "batch_size": batch_size, "seed": seed,
        "sampler": sampler if policy in DIFFUSION_TYPES else "none (single pass)",
        "eval_episodes": overall["n_episodes"], "eval_seed": eval_seed, "train_wall_s": train_wall_s,
        "down_dims": down_dims, "n_action_steps": n_action_steps, "extra_flags": extra_flags, "streaming": streaming,
        "date": datetime.date.today().isoformat(), "device": device, "obs": obs, "episodes": episodes,
    }
    return row | ({"note": note} if note else {})


def device_name(device: str) -> str:
    """The GPU's name for a CUDA run (rows from different cards must not replace each other), else `device`."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device))
    return device


def record(results: Path, row: dict, key: tuple[str, ...] = ROW_KEY) -> None:
    """Add one row to a results file, replacing an old row with the same values under `key` (the same run and
    evaluation)."""
    old = json.loads(results.read_text()) if results.exists() else []
    kept = [r for r in old if tuple(r.get(k) for k in key) != tuple(row.get(k) for k in key)]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(kept + [row], indent=1) + "\n")
