"""One-step students on keypoint PushT: distil a trained checkpoint with lerobot-train, then evaluate the teacher
(its DDIM-10) and the student (1 and 2 steps) with lerobot-eval on the same seed ranges.

    python benchmarks/distill_pusht.py --teacher RUN/checkpoints/020000/pretrained_model --data KEYPOINT_DATA \
        --workdir runs/distill [--steps 2000] [--batch-size 64] [--distill-flags="..."] \
        [--eval-seeds 100000 400000] [--eval-episodes 50] [--student-steps 1 2] [--parallel 2]

The student starts from the teacher (`--policy.path=TEACHER --policy.distill_teacher_path=TEACHER`) and trains
on the same keypoint dataset (`examples/pusht/convert_zarr.py --no-images`), streaming, seed 1000. Every stage
prints its command and is skipped when its output exists; evaluations run --parallel at a time, one torch
thread each. Rows go to benchmarks/results/distill_pusht.json (one per policy, sampler and seed range), with
the distillation's wall time beside the steps.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import time
from pathlib import Path

from diffusion_plus_tools import lerobot_cli
from diffusion_plus_tools.results import record

ROOT = Path(__file__).resolve().parents[1]
BIN = lerobot_cli.default_bin()
# One row per policy (teacher or student with its sampler), teacher, distillation and evaluation seed range.
ROW_KEY = ("policy", "eval_seed", "teacher", "distill_steps", "distill_batch_size", "distill_flags")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's pretrained_model folder")
    parser.add_argument("--data", type=Path, required=True, help="the keypoint LeRobotDataset it was trained on")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--distill-flags", default="--policy.scheduler_warmup_steps=100",
                        help="extra lerobot-train flags for the distillation, as one argument: --distill-flags=\"...\"")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[100000, 400000])
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--student-steps", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="evaluations at once (one thread each)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the distillation")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/distill_pusht.json")
    args = parser.parse_args()

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    teacher = args.teacher.resolve()
    out = work / "student"
    student = out / "checkpoints" / "last" / "pretrained_model"
    wall_file = work / "distill_wall_s.txt"
    if not student.exists():
        flags = lerobot_cli.train_flags(
            None, args.data.resolve(), out, steps=args.steps, batch_size=args.batch_size,
            save_freq=args.steps, num_workers=1, log_freq=100, seed=1000,
            extra=["--dataset.streaming=true", f"--policy.path={teacher}", f"--policy.distill_teacher_path={teacher}",
                   *shlex.split(args.distill_flags)])
        cmd = [str(BIN / "lerobot-train"), *flags]
        print("$ " + shlex.join(cmd), flush=True)
        wall_file.write_text(f"{lerobot_cli.run(cmd, work / 'distill.log', args.threads):.0f}\n")
    wall = int(wall_file.read_text()) if wall_file.exists() else None

    jobs = []  # (name, checkpoint, sampler flags, seed)
    for seed in args.eval_seeds:
        jobs.append(("teacher DDIM-10", teacher, ["--policy.noise_scheduler_type=DDIM",
                                                  "--policy.num_inference_steps=10"], seed))
        for n in args.student_steps:
            jobs.append((f"student consistency-{n}", student, [f"--policy.num_inference_steps={n}"], seed))
    pending = [j for j in jobs if not (eval_dir(work, j) / "eval_info.json").exists()]
    running = []
    while pending or running:
        while pending and len(running) < args.parallel:
            job = pending.pop(0)
            cmd = [str(BIN / "lerobot-eval"), f"--policy.path={job[1]}", "--env.type=pusht",
                   "--env.obs_type=environment_state_agent_pos", f"--eval.n_episodes={args.eval_episodes}",
                   f"--eval.batch_size={min(args.eval_episodes, 50)}", "--eval.use_async_envs=false",
                   "--policy.device=cpu", f"--seed={job[3]}", f"--output_dir={eval_dir(work, job)}", *job[2]]
            print("$ " + shlex.join(cmd), flush=True)
            running.append(lerobot_cli.start(cmd, work / f"{eval_dir(work, job).name}.log", threads=1, mode="w"))
        time.sleep(5)
        for proc in [p for p in running if p.poll() is not None]:
            running.remove(proc)
            if proc.returncode != 0:
                raise SystemExit(f"lerobot-eval failed: {shlex.join(proc.args)}")

    for job in jobs:
        overall = json.loads((eval_dir(work, job) / "eval_info.json").read_text())["overall"]
        row = {"policy": job[0], "pc_success": round(overall["pc_success"], 2),
               "avg_max_reward": round(overall["avg_max_reward"], 4), "eval_seed": job[3],
               "eval_episodes": overall["n_episodes"], "teacher": teacher_name(args.teacher),
               "distill_steps": args.steps,
               "distill_batch_size": args.batch_size, "distill_flags": args.distill_flags, "distill_wall_s": wall,
               "date": datetime.date.today().isoformat()}
        print(json.dumps(row), flush=True)
        record(args.results, row, ROW_KEY)


def teacher_name(path: Path) -> str:
    """The teacher as given, relative to the repository when it is inside it (rows name no other machine's paths)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def eval_dir(work: Path, job) -> Path:
    return work / f"eval_{job[0].split()[0]}_{job[0].split()[-1]}_seed{job[3]}"


if __name__ == "__main__":
    main()
