"""Robot-loop rate of `lerobot-rollout` with an SO-100 and two 640x480 cameras, without hardware.

Writes the synthetic two-camera SO-100 dataset (examples/so100/synthetic_dataset.py), trains a policy for a
few steps with the given settings (only the network's size matters for the rate, not what it learned), then
runs `lerobot-rollout` on `--robot.type=so100_dryrun` with two 640x480 cameras at --fps, once per inference
type, and reads the dry-run robot's action log: the measured rate, and whether every action is finite and
within the dataset's action range.

    python benchmarks/robot_loop.py --workdir runs/robot_loop [--fps 30] [--duration 20] [--inference sync rtc]
        [--train-flags "..."] [--threads 1] [--distill] [--json benchmarks/results/robot_loop_cpu.json]

The default --train-flags are the settings README recommends for a CPU: one observation (what RTC needs),
a 120x160 working size, the 4.5M U-Net, 16 actions per chunk; DDIM-10 (the default sampler); and the rollout
runs with OMP_NUM_THREADS=1 by default, so that inference leaves the robot loop a core of its own
(--threads 2, torch's default on two cores, held RTC at 29.8 fps as well in the last measurement:
BENCHMARKS.md). --distill rolls out a one-step student distilled (2 steps) from that policy instead, with its
own sampler.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
from pathlib import Path

from diffusion_plus_tools import lerobot_cli
from diffusion_plus_tools.so100_synthetic import write

BIN = lerobot_cli.default_bin()
CPU_FLAGS = ("--policy.n_obs_steps=1 --policy.resize_shape=[120,160] --policy.down_dims=[64,128,256] "
             "--policy.n_action_steps=16")
CAMERAS = ("{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}, "
           "wrist: {type: opencv, index_or_path: 1, width: 640, height: 480, fps: 30}}")


def run(tool: str, args: list[str], log: Path, threads: int | None) -> None:
    print("$ " + shlex.join([tool, *args]), flush=True)
    lerobot_cli.run([str(BIN / tool), *args], log, threads, mode="w")


def check_actions(log: Path, data: Path) -> dict:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    summary, actions = records[-1]["summary"], [r["action"] for r in records[:-1]]
    stats = json.loads((data / "meta" / "stats.json").read_text())["action"]
    names = json.loads((data / "meta" / "info.json").read_text())["features"]["action"]["names"]
    bad = [a for a in actions if not all(
        math.isfinite(a[n]) and stats["min"][i] - 1e-3 <= a[n] <= stats["max"][i] + 1e-3 for i, n in enumerate(names))]
    return {**summary, "all_finite_and_in_range": not bad and bool(actions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--inference", nargs="+", default=["sync", "rtc"], choices=["sync", "rtc"])
    parser.add_argument("--policy-type", default="diffusion_plus")
    parser.add_argument("--train-flags", default=CPU_FLAGS, help="extra lerobot-train flags (quoted)")
    parser.add_argument("--rollout-flags", default="", help="extra lerobot-rollout flags (quoted)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for the rollout (1: the policy keeps one core, the robot loop the other)")
    parser.add_argument("--json", type=Path, default=None, help="append the rows to this JSON file")
    parser.add_argument("--distill", action="store_true", help="roll out a one-step student distilled from the "
                        "trained policy (lerobot-train --policy.path=... --policy.distill_teacher_path=...)")
    args = parser.parse_args()

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not data.exists():
        write(data, episodes=3, frames=40)
    model = work / "train" / "checkpoints" / "last" / "pretrained_model"
    if not model.exists():
        run("lerobot-train", lerobot_cli.train_flags(
            args.policy_type, data, work / "train", steps=2, batch_size=2, save_freq=2,
            repo_id="local/so100_synth", extra=shlex.split(args.train_flags)), work / "train.log", threads=1)
    if args.distill:
        teacher, model = model, work / "distill" / "checkpoints" / "last" / "pretrained_model"
        if not model.exists():
            extra = [f"--policy.path={teacher}", f"--policy.distill_teacher_path={teacher}"]
            flags = lerobot_cli.train_flags(None, data, work / "distill", steps=2, batch_size=2,
                                            save_freq=2, repo_id="local/so100_synth", extra=extra)
            run("lerobot-train", flags, work / "distill.log", 1)
    rows = []
    for inference in args.inference:
        log = work / f"actions_{inference}.jsonl"
        run("lerobot-rollout", [
            f"--policy.path={model}", "--policy.device=cpu", "--robot.type=so100_dryrun",
            f"--robot.cameras={CAMERAS}", f"--robot.action_log={log}", f"--inference.type={inference}",
            f"--fps={args.fps}", f"--duration={args.duration}", "--return_to_initial_position=false",
            "--play_sounds=false", *shlex.split(args.rollout_flags)], work / f"rollout_{inference}.log", args.threads)
        row = {"inference": inference, "fps_asked": args.fps, **check_actions(log, data),
               "policy_type": args.policy_type, "train_flags": args.train_flags, "rollout_flags": args.rollout_flags,
               "sampler": "consistency-1 (distilled)" if args.distill else "DDIM-10", "threads": args.threads,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": datetime.date.today().isoformat()}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(old + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
