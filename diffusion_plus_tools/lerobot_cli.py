"""LeRobot's console scripts (`lerobot-train`, `lerobot-eval`, ...) from Python: where they are, their
offline environment, `lerobot-train`'s flags, and running one with its output in a log file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def default_bin() -> Path:
    """The folder of `lerobot-train`: beside this interpreter (a venv), else the one on PATH."""
    here = Path(sys.executable).parent
    if (here / "lerobot-train").exists():
        return here
    found = shutil.which("lerobot-train")
    return Path(found).parent if found else here


def offline_env(threads: int | None = None) -> dict[str, str]:
    """This process's environment with the Hub and W&B off; OMP_NUM_THREADS=threads unless threads is 0/None."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def train_flags(policy_type: str | None, dataset_root: Path | str, output_dir: Path | str, *, steps: int,
                batch_size: int, save_freq: int, device: str = "cpu", repo_id: str = "local/pusht",
                num_workers: int = 0, log_freq: int | None = None, seed: int | None = None,
                extra: Sequence[str] = ()) -> list[str]:
    """`lerobot-train`'s arguments for a local dataset, no Hub push and no evaluation during training;
    `log_freq` and `seed` are LeRobot's defaults when None; `extra` comes last. policy_type None: no
    `--policy.type`, for a policy `extra` loads with `--policy.path` (fine-tuning, distillation)."""
    flags = [
        *([f"--policy.type={policy_type}"] if policy_type else []), f"--policy.device={device}",
        "--policy.push_to_hub=false",
        f"--dataset.repo_id={repo_id}", f"--dataset.root={dataset_root}", f"--steps={steps}",
        f"--batch_size={batch_size}", f"--num_workers={num_workers}", f"--save_freq={save_freq}",
        "--env_eval_freq=0",
    ]
    if log_freq is not None:
        flags.append(f"--log_freq={log_freq}")
    if seed is not None:
        flags.append(f"--seed={seed}")
    return [*flags, f"--output_dir={output_dir}", *extra]


def capture(cmd: Sequence[str], threads: int | None = None, timeout: float | None = None,
            ) -> subprocess.CompletedProcess:
    """Run `cmd` offline and return its exit status and output (text)."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=offline_env(threads))


def start(cmd: Sequence[str], log: Path, threads: int | None = None, mode: str = "a") -> subprocess.Popen:
    """Start `cmd` offline in a session of its own (so that `stop` also stops its data workers), its output
    written to `log`."""
    with open(log, mode) as f:
        return subprocess.Popen(list(cmd), stdout=f, stderr=subprocess.STDOUT, env=offline_env(threads),
                                start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Send `sig` to the whole process group of a command that `start` began."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the group has exited
        pass


def run(cmd: Sequence[str], log: Path, threads: int | None = None, done: Callable[[], bool] | None = None,
        mode: str = "a", poll_s: float = 5.0) -> float:
    """Run `cmd` to its end (`start`, then wait); returns its wall time in seconds. A failure stops this
    script with the log's path. With `done`, polled every `poll_s`, the command is stopped (its whole
    process group) as soon as `done()` is true; an interrupt of this script stops it too."""
    t0 = time.time()
    proc = start(cmd, log, threads, mode)
    try:
        while proc.poll() is None:
            if done is not None and done():
                stop(proc)
                proc.wait()
                return time.time() - t0
            try:  # returns as soon as the command ends
                proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        stop(proc, signal.SIGKILL)
        raise
    if proc.returncode != 0:
        raise SystemExit(f"{Path(cmd[0]).name} failed (exit {proc.returncode}), see {log}")
    return time.time() - t0
