"""PushT success at equal training budget: diffusion_plus, diffusion_plus_transformer, LeRobot's diffusion and
act, trained with lerobot-train on the 206 human demos (keypoints) and evaluated with lerobot-eval.

    python benchmarks/pusht_success.py --workdir runs/pusht_success [--steps 20000] [--train-seeds 1000]
        [--policies diffusion_plus diffusion_plus_transformer diffusion act] [--eval-at 5000 10000 20000]
        [--eval-episodes 50] [--eval-seed 100000] [--down-dims 64 128 256] [--act-flags "..."]
        [--diffusion-flags "..."]
        [--n-action-steps N] [--dry-run]
    python benchmarks/pusht_success.py --merge WORK/gpu_rows.json     # rows of benchmarks/gpu_pusht.sh

Stages go round-robin over the evaluated steps: every policy is trained to the first of them (lerobot-train
with the full --steps, stopped after that checkpoint is saved) and evaluated, then every policy is resumed to
the next one, so an interrupted run still compares all policies at the same budget. Every stage prints its
command and is skipped when its output exists: the script resumes where it stopped, and any stage can be
rerun alone by pasting its command. Run it in the background (`nohup ... &`); progress goes to stdout.
Each evaluation adds its row to benchmarks/results/pusht_success.json at once (policy, seed, step).

Data is read with `--dataset.streaming=true` by default, for every policy alike: LeRobotDataset's random
access costs about 8 ms of CPU per sample on a 2-core VM, streaming about 1 ms (benchmarks/data_path.py). Streaming shuffles within a 1000-frame buffer; `--no-streaming` restores random access.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# lerobot-train/-eval beside this interpreter; PUSHT_SUCCESS_BIN points elsewhere (tests use stand-ins).
BIN = Path(os.environ.get("PUSHT_SUCCESS_BIN", Path(sys.executable).parent))
DIFFUSION_TYPES = ("diffusion_plus", "diffusion_plus_transformer", "diffusion")


def run(cmd: list[str], log: Path, dry_run: bool, threads: int, done=None, note: str = "") -> float:
    """Run one stage, its output appended to `log`; returns its wall time in seconds.

    With `done`, a callable polled every few seconds, the stage is stopped (its whole process group, data
    workers included) as soon as `done()` is true."""
    print("$ " + shlex.join(cmd) + note, flush=True)
    if dry_run:
        return 0.0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.time()
    with open(log, "a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while proc.poll() is None:
            if done is not None and done():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                return time.time() - start
            try:  # returns as soon as the stage ends; checks `done` every 5 s
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    if proc.returncode != 0:
        raise SystemExit(f"stage failed (exit {proc.returncode}), see {log}")
    return time.time() - start


def checkpoint(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"{step:06d}"


def reached(out: Path, step: int) -> bool:
    """Training has a complete checkpoint at `step` or later: lerobot-train points `last` at a checkpoint only
    after writing it (a folder alone may be a save cut short)."""
    last = out / "checkpoints" / "last"
    return last.is_symlink() and int(last.resolve().name) >= step


def train_cmd(policy: str, seed: int, args, data: Path, out: Path, resume: bool) -> list[str]:
    last = out / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
    if resume or last.exists():  # a later stage or an interrupted run: continue from the last checkpoint
        return [str(BIN / "lerobot-train"), f"--config_path={last}", "--resume=true"]
    if out.exists() and not args.dry_run:  # stopped before its first checkpoint: start over
        shutil.rmtree(out)
    cmd = [
        str(BIN / "lerobot-train"), f"--policy.type={policy}", f"--policy.device={args.device}",
        "--policy.push_to_hub=false", "--dataset.repo_id=local/pusht", f"--dataset.root={data}",
        f"--steps={args.steps}", f"--batch_size={args.batch_size}", f"--num_workers={args.num_workers}",
        f"--save_freq={args.save_freq}", "--env_eval_freq=0", "--log_freq=200", f"--seed={seed}",
        f"--output_dir={out}", f"--dataset.streaming={str(args.streaming).lower()}",
    ]
    if policy in ("diffusion_plus", "diffusion"):  # the same U-Net size for both; the transformer keeps its own
        cmd.append(f"--policy.down_dims=[{','.join(map(str, args.down_dims))}]")
    return cmd + shlex.split(extra_flags(policy, args))


def extra_flags(policy: str, args) -> str:
    return {"act": args.act_flags, "diffusion": args.diffusion_flags}.get(policy, "")


def eval_cmd(policy: str, checkpoint: Path, args, out: Path) -> list[str]:
    cmd = [
        str(BIN / "lerobot-eval"), f"--policy.path={checkpoint}", "--env.type=pusht",
        "--env.obs_type=environment_state_agent_pos", f"--eval.n_episodes={args.eval_episodes}",
        f"--eval.batch_size={min(args.eval_episodes, 50)}", "--eval.use_async_envs=false",
        f"--policy.device={args.device}", f"--seed={args.eval_seed}", f"--output_dir={out}",
    ]
    if policy in DIFFUSION_TYPES:
        sampler, steps = args.sampler.split("-")
        cmd += [f"--policy.noise_scheduler_type={sampler}", f"--policy.num_inference_steps={steps}"]
    if args.n_action_steps:
        cmd.append(f"--policy.n_action_steps={args.n_action_steps}")
    return cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="where data, runs and logs go (required unless --merge)")
    parser.add_argument("--merge", type=Path, help="only add the rows of this file (benchmarks/gpu_pusht.sh's "
                        "gpu_rows.json) to --results, then stop")
    parser.add_argument("--zarr", type=Path, default=ROOT.parent / "shared/data/pusht_cchi_v7_replay.zarr")
    parser.add_argument("--policies", nargs="+", default=["diffusion_plus", "diffusion_plus_transformer",
                                                         "diffusion", "act"])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--eval-at", type=int, nargs="+", default=None, help="steps to evaluate (default: 1/4, 1/2, all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[1000])
    parser.add_argument("--down-dims", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--act-flags", default="", help="extra lerobot-train flags for act (default: LeRobot's "
                        "act defaults, 40M parameters with a 100-step chunk: slow on a CPU)")
    parser.add_argument("--diffusion-flags", default="", help="extra lerobot-train flags for LeRobot's diffusion "
                        "(e.g. the paper's horizons: \"--policy.horizon=16 --policy.n_action_steps=8\"); "
                        "use a --workdir of its own, as its runs are named by policy and seed only")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=100000)
    parser.add_argument("--sampler", default="DDIM-10", help="sampler-steps for the diffusion policies at eval")
    parser.add_argument("--n-action-steps", type=int, default=None,
                        help="actions executed per chunk at eval, for every policy (default: each checkpoint's "
                        "own); evaluations go to folders of their own, ending in _aN")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per stage (0: unset)")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=True,
                        help="read the data with --dataset.streaming (default; see above)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/pusht_success.json")
    parser.add_argument("--dry-run", action="store_true", help="print the stage commands only")
    args = parser.parse_args()
    if not re.fullmatch(r"(DDPM|DDIM|DPM\+\+2M)-[1-9][0-9]*", args.sampler):
        parser.error(f"--sampler must be SAMPLER-STEPS with SAMPLER one of DDPM, DDIM, DPM++2M, got {args.sampler!r}")
    if args.n_action_steps is not None and args.n_action_steps < 1:
        parser.error(f"--n-action-steps must be an integer >= 1, got {args.n_action_steps}")
    if args.merge:
        rows = json.loads(args.merge.read_text())
        for row in rows:
            record(args.results, row)
        print(f"added {len(rows)} rows of {args.merge} to {args.results}")
        return
    if args.workdir is None:
        parser.error("--workdir is required (unless --merge)")
    eval_at = sorted(set(args.eval_at or [args.steps // 4, args.steps // 2, args.steps]))
    if eval_at[-1] > args.steps or eval_at[0] <= 0:
        parser.error(f"--eval-at must be within 1..--steps={args.steps}, got {eval_at}")
    # Checkpoints are saved at every evaluated step (their greatest common divisor as save_freq).
    args.save_freq = math.gcd(*eval_at)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    data = work / "data"
    if not (data / "meta" / "info.json").exists():
        run([sys.executable, str(ROOT / "examples/pusht/convert_zarr.py"), "--zarr", str(args.zarr),
             "--root", str(data), "--no-images", "--force"], work / "convert.log", args.dry_run, args.threads)

    for stage, stop_at in enumerate(eval_at):
        for seed in args.train_seeds:
            for policy in args.policies:
                out = work / f"{policy}_seed{seed}"
                timing = work / f"{policy}_seed{seed}.train_s"
                if not reached(out, stop_at):
                    print(f"[train] {policy} seed {seed}, to step {stop_at} of {args.steps}", flush=True)
                    last_stage = stop_at == args.steps
                    seconds = run(
                        train_cmd(policy, seed, args, data, out, resume=args.dry_run and stage > 0), work / f"{policy}_seed{seed}.train.log",
                        args.dry_run, args.threads, done=None if last_stage else lambda: reached(out, stop_at),
                        note="" if last_stage else f"   # stopped after the step-{stop_at} checkpoint",
                    )
                    if not args.dry_run:  # the wall time of all of this policy's training stages so far
                        before = int(timing.read_text()) if timing.exists() else 0
                        timing.write_text(f"{before + seconds:.0f}")
                first_ev = work / f"{policy}_seed{seed}_eval{stop_at}"  # at the checkpoint's own n_action_steps
                ev = first_ev.with_name(first_ev.name + (f"_a{args.n_action_steps}" if args.n_action_steps else ""))
                ckpt = checkpoint(out, stop_at) / "pretrained_model"
                settings = {"sampler": args.sampler if policy in DIFFUSION_TYPES else None,
                            "eval_seed": args.eval_seed, "eval_episodes": args.eval_episodes}
                if args.n_action_steps:
                    settings["n_action_steps"] = args.n_action_steps
                if not (ev / "eval_info.json").exists():
                    print(f"[eval] {policy} seed {seed} at step {stop_at}", flush=True)
                    run(eval_cmd(policy, ckpt, args, ev), work / f"{ev.name}.log", args.dry_run, args.threads)
                    if not args.dry_run:
                        (ev / "eval_settings.json").write_text(json.dumps(settings) + "\n")
                        # The timing file holds this step's training time only while training stops here
                        # (later stages add to it; an older checkpoint evaluated late gets no time).
                        if train_time(first_ev) is None and timing.exists() and not reached(out, stop_at + 1):
                            (ev / "train_wall_s").write_text(timing.read_text())
                if args.dry_run:
                    continue
                done_with = ev / "eval_settings.json"
                if done_with.exists() and json.loads(done_with.read_text()) != settings:
                    # The row would otherwise label an old result with today's settings.
                    raise SystemExit(f"{ev} was evaluated with {done_with.read_text().strip()}, not {settings}: "
                                     "move it away (or use another --workdir) to evaluate again")
                overall = json.loads((ev / "eval_info.json").read_text())["overall"]
                config = json.loads((ckpt / "config.json").read_text())  # as trained
                record(args.results, make_row(
                    policy, overall, steps=stop_at, of_steps=args.steps, batch_size=args.batch_size, seed=seed,
                    sampler=args.sampler, eval_seed=args.eval_seed,
                    train_wall_s=train_time(first_ev),
                    down_dims=config.get("down_dims"),  # None for act and the transformer
                    n_action_steps=args.n_action_steps or config["n_action_steps"],
                    extra_flags=extra_flags(policy, args), streaming=args.streaming,
                    device=device_name(args.device), obs="keypoints",
                    episodes=json.loads((data / "meta/info.json").read_text())["total_episodes"]))
                print(f"  {policy:27s} seed {seed} step {stop_at:6d}: {overall['pc_success']:5.1f}% success, "
                      f"avg max coverage {overall['avg_max_reward']:.3f}", flush=True)


def make_row(policy: str, overall: dict, *, steps: int, of_steps: int, batch_size: int, seed: int, sampler: str,
             eval_seed: int, train_wall_s: int | None, down_dims: list[int] | None, n_action_steps: int,
             extra_flags: str, streaming: bool, device: str, obs: str, episodes: int | None,
             note: str | None = None) -> dict:
    """One row of results/pusht_success.json from lerobot-eval's `overall` block; benchmarks/gpu_pusht.sh
    builds its rows with this too, so CPU and GPU rows share one schema."""
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


def train_time(first_ev: Path) -> int | None:
    """Training seconds up to a checkpoint's step, kept in the `train_wall_s` file of whichever of its
    evaluations ran first (`first_ev`, or `first_ev`_aN at another n_action_steps)."""
    known = [first_ev / "train_wall_s", *sorted(first_ev.parent.glob(f"{first_ev.name}_a*/train_wall_s"))]
    known = [f for f in known if f.exists()]
    return int(known[0].read_text()) if known else None


def device_name(device: str) -> str:
    """The GPU's name for a CUDA run (rows from different cards must not replace each other), else `device`."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device))
    return device


def record(results: Path, row: dict) -> None:
    """Add one row to the results file, replacing the row of the same run and evaluation: policy, seed, step,
    budget, batch, U-Net size, device, observation, actions per chunk and extra training flags (rows of
    benchmarks/gpu_pusht.sh share the file)."""
    key = ("policy", "seed", "steps", "of_steps", "batch_size", "down_dims", "device", "obs", "n_action_steps",
           "extra_flags")
    old = json.loads(results.read_text()) if results.exists() else []
    kept = [r for r in old if tuple(r.get(k) for k in key) != tuple(row.get(k) for k in key)]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(kept + [row], indent=1) + "\n")

if __name__ == "__main__":
    main()
