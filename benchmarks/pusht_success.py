"""PushT success at equal training budget: diffusion_plus, diffusion_plus_transformer, LeRobot's diffusion and
act, trained with lerobot-train on the 206 human demos (keypoints) and evaluated with lerobot-eval.

    python benchmarks/pusht_success.py --workdir runs/pusht_success [--steps 20000] [--train-seeds 1000]
        [--policies diffusion_plus diffusion_plus_transformer diffusion act] [--eval-at 5000 10000 20000]
        [--eval-episodes 50] [--eval-seed 100000] [--down-dims 64 128 256] [--act-flags "..."]
        [--diffusion-flags "..."] [--ours-flags "..."]
        [--n-action-steps N] [--data DIR] [--dry-run]
    python benchmarks/pusht_success.py --workdir WORK --time-budget 210 --data KEYPOINT_DATA
        [--image-data IMAGE_DATA] [--device cuda] [--save-freq 1000] [--eval-timeout 180]
    python benchmarks/pusht_success.py --merge WORK/gpu_rows.json     # rows of a --time-budget run

Stages go round-robin over the evaluated steps: every policy is trained to the first of them (lerobot-train
with the full --steps, stopped after that checkpoint is saved) and evaluated, then every policy is resumed to
the next one, so an interrupted run still compares all policies at the same budget. Every stage prints its
command and is skipped when its output exists: the script resumes where it stopped, and any stage can be
rerun alone by pasting its command. Run it in the background (`nohup ... &`); progress goes to stdout.
Each evaluation adds its row to benchmarks/results/pusht_success.json at once (policy, seed, step).

--time-budget SECONDS is one short run cut by time (a lent GPU): every policy is trained at once from the same
seed, plus diffusion_plus on the 96x96 images of --image-data (convert_zarr.py --no-keypoints, lerobot/pusht's
layout) if given; all are stopped after SECONDS; then every keypoint policy is evaluated at the largest step
all of them reached (equal budget) and at the checkpoints nearest 1/2 and 1/4 of it, and the image policy at
its last checkpoint, all at once. The runs start afresh. Rows go to WORK/gpu_rows.json; --merge adds them to
--results. Its defaults: --device cuda, --down-dims 256 512 1024 (diffusion_plus's own), --save-freq 1000,
--threads 2 per training run (each evaluation 1). benchmarks/device_bundle.sh packs the data and LeRobot for
a GPU machine without them.

Data is read with `--dataset.streaming=true` by default, for every policy alike: LeRobotDataset's random
access costs about 8 ms of CPU per sample on a 2-core VM, streaming about 1 ms (benchmarks/data_path.py). Streaming shuffles within a 1000-frame buffer; `--no-streaming` restores random access.
"""

from __future__ import annotations

import argparse
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

from diffusion_plus_tools import lerobot_cli
from diffusion_plus_tools.results import DIFFUSION_TYPES, device_name, make_row, record

ROOT = Path(__file__).resolve().parents[1]
# lerobot-train/-eval beside this interpreter or on PATH; PUSHT_SUCCESS_BIN points elsewhere (tests use stand-ins).
BIN = Path(os.environ.get("PUSHT_SUCCESS_BIN") or lerobot_cli.default_bin())
POLICIES = ["diffusion_plus", "diffusion_plus_transformer", "diffusion", "act"]
KEYPOINTS, IMAGE = "environment_state_agent_pos", "pixels_agent_pos"  # lerobot-eval's --env.obs_type
# Where the two modes' defaults differ (None on the command line: the mode's own).
STAGE_DEFAULTS = {"device": "cpu", "down_dims": [64, 128, 256], "threads": 1}
BUDGET_DEFAULTS = {"device": "cuda", "down_dims": [256, 512, 1024], "threads": 2, "save_freq": 1000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="where data, runs and logs go (required unless --merge)")
    parser.add_argument("--merge", type=Path, help="only add the rows of this file (a --time-budget run's "
                        "gpu_rows.json) to --results, then stop")
    parser.add_argument("--zarr", type=Path, default=ROOT.parent / "shared/data/pusht_cchi_v7_replay.zarr")
    parser.add_argument("--data", type=Path, default=None, help="an existing keypoint LeRobotDataset "
                        "(default: WORKDIR/data, converted from --zarr)")
    parser.add_argument("--policies", nargs="+", default=POLICIES)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--eval-at", type=int, nargs="+", default=None, help="steps to evaluate (default: 1/4, 1/2, all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[1000])
    parser.add_argument("--down-dims", type=int, nargs="+", default=None,
                        help="U-Net size of diffusion_plus and LeRobot's diffusion (default: 64 128 256; "
                        "with --time-budget 256 512 1024)")
    parser.add_argument("--act-flags", default="", help="extra lerobot-train flags for act (default: LeRobot's "
                        "act defaults, 40M parameters with a 100-step chunk: slow on a CPU)")
    parser.add_argument("--diffusion-flags", default="", help="extra lerobot-train flags for LeRobot's diffusion "
                        "(e.g. the paper's horizons: \"--policy.horizon=16 --policy.n_action_steps=8\"); "
                        "use a --workdir of its own, as its runs are named by policy and seed only")
    parser.add_argument("--ours-flags", default="", help="extra lerobot-train flags for diffusion_plus and "
                        "diffusion_plus_transformer, e.g. a recipe: \"--config_path=examples/pusht/train_cpu_30min.json\" "
                        "(the flags of this script, such as --steps and --batch-size, still apply)")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=100000)
    parser.add_argument("--sampler", default="DDIM-10", help="sampler-steps for the diffusion policies at eval")
    parser.add_argument("--n-action-steps", type=int, default=None,
                        help="actions executed per chunk at eval, for every policy (default: each checkpoint's "
                        "own); evaluations go to folders of their own, ending in _aN")
    parser.add_argument("--device", default=None, help="default: cpu; with --time-budget cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS per stage, 0: unset (default: 1; with --time-budget 2 per training run)")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=True,
                        help="read the data with --dataset.streaming (default; see above)")
    parser.add_argument("--time-budget", type=int, default=None, metavar="SECONDS",
                        help="train all policies at once for this long, then evaluate (see above)")
    parser.add_argument("--image-data", type=Path, default=None,
                        help="with --time-budget: also train diffusion_plus on this image LeRobotDataset")
    parser.add_argument("--save-freq", type=int, default=None, help="with --time-budget: checkpoint every N "
                        "steps (default 1000; the stages save at the --eval-at steps)")
    parser.add_argument("--eval-timeout", type=int, default=180,
                        help="with --time-budget: seconds the evaluations may take (they run at once)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/pusht_success.json")
    parser.add_argument("--dry-run", action="store_true", help="print the stage commands only")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"(DDPM|DDIM|DPM\+\+2M)-[1-9][0-9]*", args.sampler):
        parser.error(f"--sampler must be SAMPLER-STEPS with SAMPLER one of DDPM, DDIM, DPM++2M, got {args.sampler!r}")
    if args.n_action_steps is not None and args.n_action_steps < 1:
        parser.error(f"--n-action-steps must be an integer >= 1, got {args.n_action_steps}")
    if args.merge:
        return args
    if args.workdir is None:
        parser.error("--workdir is required (unless --merge)")
    for data in (args.data, args.image_data):
        if data is not None and not (data / "meta" / "info.json").exists():
            parser.error(f"{data} is not a LeRobotDataset (no meta/info.json)")
    budget = args.time_budget is not None
    if budget:
        if args.time_budget < 1:
            parser.error(f"--time-budget must be >= 1 second, got {args.time_budget}")
        if args.eval_at:
            parser.error("--eval-at is for the stages; --time-budget evaluates where the runs got to")
    else:
        for name in ("image_data", "save_freq"):
            if getattr(args, name) is not None:
                parser.error(f"--{name.replace('_', '-')} needs --time-budget")
    for name, value in (BUDGET_DEFAULTS if budget else STAGE_DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not budget:
        args.eval_at = sorted(set(args.eval_at or [args.steps // 4, args.steps // 2, args.steps]))
        if args.eval_at[-1] > args.steps or args.eval_at[0] <= 0:
            parser.error(f"--eval-at must be within 1..--steps={args.steps}, got {args.eval_at}")
        # Checkpoints are saved at every evaluated step (their greatest common divisor as save_freq).
        args.save_freq = math.gcd(*args.eval_at)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.merge:
        merge(args.merge, args.results)
    elif args.time_budget is not None:
        run_time_budget(args)
    else:
        run_stages(args)


# --- What both modes share ---------------------------------------------------------------------------------


def say(cmd: list[str], note: str = "") -> None:
    print("$ " + shlex.join(cmd) + note, flush=True)


def prepare_data(args, work: Path) -> Path:
    """The keypoint dataset: --data, else WORKDIR/data, converted from --zarr unless it is there."""
    if args.data is not None:
        return args.data.resolve()
    data = work / "data"
    if not (data / "meta" / "info.json").exists():
        cmd = [sys.executable, str(ROOT / "examples/pusht/convert_zarr.py"), "--zarr", str(args.zarr),
               "--root", str(data), "--no-images", "--force"]
        say(cmd)
        if not args.dry_run:
            lerobot_cli.run(cmd, work / "convert.log", args.threads)
    return data


def episodes_in(data: Path) -> int | None:
    info = data / "meta" / "info.json"
    return json.loads(info.read_text())["total_episodes"] if info.exists() else None


def checkpoint(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"{step:06d}"


def reached(out: Path, step: int) -> bool:
    """Training has a complete checkpoint at `step` or later: lerobot-train points `last` at a checkpoint only
    after writing it (a folder alone may be a save cut short)."""
    last = out / "checkpoints" / "last"
    return last.is_symlink() and int(last.resolve().name) >= step


def saved_steps(out: Path) -> list[int]:
    """The steps of the complete checkpoints: those up to the one `last` points at (a kill may cut a later
    save short)."""
    last = out / "checkpoints" / "last"
    if not last.is_symlink():
        return []
    top = int(last.resolve().name)
    return sorted(int(d.name) for d in (out / "checkpoints").iterdir()
                  if d.name.isdigit() and d.is_dir() and int(d.name) <= top)


def extra_flags(policy: str, args) -> str:
    return {"act": args.act_flags, "diffusion": args.diffusion_flags}.get(policy, args.ours_flags)


def train_cmd(policy: str, seed: int, args, data: Path, out: Path, resume: bool) -> list[str]:
    last = out / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
    if resume or last.exists():  # a later stage or an interrupted run: continue from the last checkpoint
        return [str(BIN / "lerobot-train"), f"--config_path={last}", "--resume=true"]
    if out.exists() and not args.dry_run:  # stopped before its first checkpoint: start over
        shutil.rmtree(out)
    extra = [f"--dataset.streaming={str(args.streaming).lower()}"]
    if policy in ("diffusion_plus", "diffusion"):  # the same U-Net size for both; the transformer keeps its own
        extra.append(f"--policy.down_dims=[{','.join(map(str, args.down_dims))}]")
    flags = lerobot_cli.train_flags(
        policy, data, out, steps=args.steps, batch_size=args.batch_size, save_freq=args.save_freq,
        device=args.device, num_workers=args.num_workers, log_freq=200, seed=seed,
        extra=extra + shlex.split(extra_flags(policy, args)))
    return [str(BIN / "lerobot-train"), *flags]


def eval_cmd(policy: str, checkpoint: Path, args, out: Path, obs: str = KEYPOINTS) -> list[str]:
    cmd = [
        str(BIN / "lerobot-eval"), f"--policy.path={checkpoint}", "--env.type=pusht",
        f"--env.obs_type={obs}", f"--eval.n_episodes={args.eval_episodes}",
        f"--eval.batch_size={min(args.eval_episodes, 50)}", "--eval.use_async_envs=false",
        f"--policy.device={args.device}", f"--seed={args.eval_seed}", f"--output_dir={out}",
    ]
    if policy in DIFFUSION_TYPES:
        sampler, steps = args.sampler.split("-")
        cmd += [f"--policy.noise_scheduler_type={sampler}", f"--policy.num_inference_steps={steps}"]
    if args.n_action_steps:
        cmd.append(f"--policy.n_action_steps={args.n_action_steps}")
    return cmd


def row(policy: str, ev: Path, ckpt: Path, args, *, seed: int, steps: int, train_wall_s: int | None, obs: str,
        data: Path, note: str | None = None) -> dict:
    """The results row of the evaluation in `ev` of checkpoint `ckpt`, with what it was trained with."""
    config = json.loads((ckpt / "config.json").read_text())  # as trained
    return make_row(
        policy, json.loads((ev / "eval_info.json").read_text())["overall"], steps=steps, of_steps=args.steps,
        batch_size=args.batch_size, seed=seed, sampler=args.sampler, eval_seed=args.eval_seed,
        train_wall_s=train_wall_s, down_dims=config.get("down_dims"),  # None for act and the transformer
        n_action_steps=args.n_action_steps or config["n_action_steps"], extra_flags=extra_flags(policy, args),
        streaming=args.streaming, device=device_name(args.device), obs=obs, episodes=episodes_in(data), note=note)


def merge(rows_file: Path, results: Path) -> None:
    rows = json.loads(rows_file.read_text())
    for r in rows:
        record(results, r)
    print(f"added {len(rows)} rows of {rows_file} to {results}")


# --- Stages: round-robin over the evaluated steps, resumable --------------------------------------------------


def run_stages(args) -> None:
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, work)
    for stage, stop_at in enumerate(args.eval_at):
        for seed in args.train_seeds:
            for policy in args.policies:
                train_stage(policy, seed, stage, stop_at, args, data, work)
                evaluate_stage(policy, seed, stop_at, args, data, work)


def train_stage(policy: str, seed: int, stage: int, stop_at: int, args, data: Path, work: Path) -> None:
    """Train (or resume) to the checkpoint at `stop_at`, adding the wall time to the policy's timing file."""
    out = work / f"{policy}_seed{seed}"
    if reached(out, stop_at):
        return
    print(f"[train] {policy} seed {seed}, to step {stop_at} of {args.steps}", flush=True)
    last_stage = stop_at == args.steps
    cmd = train_cmd(policy, seed, args, data, out, resume=args.dry_run and stage > 0)
    say(cmd, "" if last_stage else f"   # stopped after the step-{stop_at} checkpoint")
    if args.dry_run:
        return
    seconds = lerobot_cli.run(cmd, work / f"{policy}_seed{seed}.train.log", args.threads,
                              done=None if last_stage else lambda: reached(out, stop_at))
    timing = work / f"{policy}_seed{seed}.train_s"  # the wall time of all of this policy's training so far
    before = int(timing.read_text()) if timing.exists() else 0
    timing.write_text(f"{before + seconds:.0f}")


def evaluate_stage(policy: str, seed: int, stop_at: int, args, data: Path, work: Path) -> None:
    """Evaluate the checkpoint at `stop_at` unless done, and record its row."""
    out, timing = work / f"{policy}_seed{seed}", work / f"{policy}_seed{seed}.train_s"
    first_ev = work / f"{policy}_seed{seed}_eval{stop_at}"  # at the checkpoint's own n_action_steps
    ev = first_ev.with_name(first_ev.name + (f"_a{args.n_action_steps}" if args.n_action_steps else ""))
    ckpt = checkpoint(out, stop_at) / "pretrained_model"
    settings = {"sampler": args.sampler if policy in DIFFUSION_TYPES else None,
                "eval_seed": args.eval_seed, "eval_episodes": args.eval_episodes}
    if args.n_action_steps:
        settings["n_action_steps"] = args.n_action_steps
    if not (ev / "eval_info.json").exists():
        print(f"[eval] {policy} seed {seed} at step {stop_at}", flush=True)
        cmd = eval_cmd(policy, ckpt, args, ev)
        say(cmd)
        if args.dry_run:
            return
        lerobot_cli.run(cmd, work / f"{ev.name}.log", args.threads)
        (ev / "eval_settings.json").write_text(json.dumps(settings) + "\n")
        # The timing file holds this step's training time only while training stops here
        # (later stages add to it; an older checkpoint evaluated late gets no time).
        if train_time(first_ev) is None and timing.exists() and not reached(out, stop_at + 1):
            (ev / "train_wall_s").write_text(timing.read_text())
    if args.dry_run:
        return
    done_with = ev / "eval_settings.json"
    if done_with.exists() and json.loads(done_with.read_text()) != settings:
        # The row would otherwise label an old result with today's settings.
        raise SystemExit(f"{ev} was evaluated with {done_with.read_text().strip()}, not {settings}: "
                         "move it away (or use another --workdir) to evaluate again")
    r = row(policy, ev, ckpt, args, seed=seed, steps=stop_at, train_wall_s=train_time(first_ev),
            obs="keypoints", data=data)
    record(args.results, r)
    print(f"  {policy:27s} seed {seed} step {stop_at:6d}: {r['pc_success']:5.1f}% success, "
          f"avg max coverage {r['avg_max_reward']:.3f}", flush=True)


def train_time(first_ev: Path) -> int | None:
    """Training seconds up to a checkpoint's step, kept in the `train_wall_s` file of whichever of its
    evaluations ran first (`first_ev`, or `first_ev`_aN at another n_action_steps)."""
    known = [first_ev / "train_wall_s", *sorted(first_ev.parent.glob(f"{first_ev.name}_a*/train_wall_s"))]
    known = [f for f in known if f.exists()]
    return int(known[0].read_text()) if known else None


# --- Time budget: all runs at once, cut by time -------------------------------------------------------------


class Run:
    """One training run of the time-budget mode and where its data and output are."""

    def __init__(self, policy: str, seed: int, data: Path, work: Path, image: bool = False):
        self.policy, self.seed, self.data, self.image = policy, seed, data, image
        self.name = f"{'image_' if image else ''}{policy}_seed{seed}"
        self.out, self.log = work / self.name, work / f"{self.name}.train.log"
        self.obs = IMAGE if image else KEYPOINTS
        self.proc: subprocess.Popen | None = None

    @property
    def label(self) -> str:  # the policy, as the rows name it, and what it observes
        return f"{'image ' if self.image else ''}{self.policy}"


def run_time_budget(args) -> None:
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, work)
    runs = [Run(p, s, data, work) for s in args.train_seeds for p in args.policies]
    if args.image_data is not None:
        runs += [Run("diffusion_plus", s, args.image_data.resolve(), work, image=True) for s in args.train_seeds]
    if args.dry_run:
        for r in runs:
            say(train_cmd(r.policy, r.seed, args, r.data, r.out, resume=False),
                f"   # stopped after {args.time_budget} s")
        return
    for old in [*work.glob("eval_*"), work / "gpu_rows.json"]:  # rows come from this run only
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    try:
        train_s = train_for(runs, args)
        evals = plan_evaluations(runs)
        evaluate_at_once(evals, args, work)
    finally:  # never leave a run holding the GPU
        for r in runs:
            if r.proc is not None:
                lerobot_cli.stop(r.proc, signal.SIGKILL)
                r.proc.wait()
    rows = budget_rows(evals, args, work, train_s, n_runs=len(runs))
    (work / "gpu_rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    for r in rows:
        print(f"{r['obs']:9s} {r['policy']:27s} step {r['steps']:6d}: {r['pc_success']:5.1f}% success, "
              f"avg max coverage {r['avg_max_reward']:.3f}")
    print(f"rows in {work / 'gpu_rows.json'}: `python benchmarks/pusht_success.py --merge` adds them to the results")


def train_for(runs: list[Run], args) -> int:
    """Start every run afresh, each in its own session; stop them all after --time-budget seconds (or once all
    have exited). Returns the seconds they trained."""
    for r in runs:
        if r.out.exists():
            shutil.rmtree(r.out)
        cmd = train_cmd(r.policy, r.seed, args, r.data, r.out, resume=False)
        say(cmd)
        r.proc = lerobot_cli.start(cmd, r.log, args.threads, mode="w")
    print(f"training {len(runs)} runs for {args.time_budget}s on {args.device}", flush=True)
    t0 = time.time()
    while time.time() - t0 < args.time_budget:
        if all(r.proc.poll() is not None for r in runs):
            print(f"every training run has exited (see {runs[0].log.parent}/*.train.log)")
            break
        time.sleep(1)
    train_s = round(time.time() - t0)
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 0)):
        for r in runs:
            lerobot_cli.stop(r.proc, sig)
        time.sleep(grace)
    return train_s


def plan_evaluations(runs: list[Run]) -> list[tuple[Run, int]]:
    """Each keypoint run at the largest step every keypoint run reached and at the checkpoints nearest 1/2 and
    1/4 of it (the learning curve); each image run at its last checkpoint."""
    steps = {r.name: saved_steps(r.out) for r in runs}
    common = None
    for r in runs:
        if r.image:
            continue
        if not steps[r.name]:
            print(f"MISSING: {r.policy} saved no checkpoint (seed {r.seed}, see {r.log})")
            continue
        print(f"{r.label} seed {r.seed} reached step {steps[r.name][-1]}")
        common = steps[r.name][-1] if common is None else min(common, steps[r.name][-1])
    images = [f"{r.label} seed {r.seed}: {steps[r.name][-1] if steps[r.name] else 'none'}" for r in runs if r.image]
    print(f"common keypoint step {common if common is not None else 'none'}"
          + (f"; last image step {', '.join(images)}" if images else ""))
    plan = []
    for r in runs:
        if r.image:
            plan += [(r, steps[r.name][-1])] if steps[r.name] else []
        elif common is not None and steps[r.name]:
            picks = {max((s for s in steps[r.name] if s <= common // q), default=None) for q in (1, 2, 4)}
            plan += [(r, s) for s in sorted(picks - {None})]
    return plan


def eval_dir(work: Path, r: Run, step: int) -> Path:
    return work / f"eval_{r.name}_{step}"


def evaluate_at_once(evals: list[tuple[Run, int]], args, work: Path) -> None:
    """All evaluations at once, one thread each, stopped after --eval-timeout seconds."""
    procs = []
    for r, step in evals:
        ev = eval_dir(work, r, step)
        cmd = eval_cmd(r.policy, checkpoint(r.out, step) / "pretrained_model", args, ev, obs=r.obs)
        say(cmd)
        procs.append((lerobot_cli.start(cmd, work / f"{ev.name}.log", threads=1, mode="w"), ev))
    deadline = time.time() + args.eval_timeout
    try:
        for proc, ev in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
    finally:  # those past the deadline, or all of them on an interrupt
        for proc, _ in procs:
            lerobot_cli.stop(proc, signal.SIGKILL)
            proc.wait()
    for _, ev in procs:
        if not (ev / "eval_info.json").exists():
            print(f"MISSING: no result from {ev} (see {ev}.log)")


def budget_rows(evals: list[tuple[Run, int]], args, work: Path, train_s: int, n_runs: int) -> list[dict]:
    note = (f"benchmarks/pusht_success.py --time-budget: {n_runs} runs shared one {device_name(args.device)} "
            "for train_wall_s; ")
    rows = []
    for r, step in evals:
        ev = eval_dir(work, r, step)
        if not (ev / "eval_info.json").exists():
            continue
        rows.append(row(
            r.policy, ev, checkpoint(r.out, step) / "pretrained_model", args, seed=r.seed, steps=step,
            train_wall_s=train_s, obs="image" if r.image else "keypoints", data=r.data,
            note=note + ("evaluated at its last checkpoint" if r.image else
                         "evaluated at the last checkpoint every keypoint run reached, and at 1/2 and 1/4 of it")))
    return rows


if __name__ == "__main__":
    main()
