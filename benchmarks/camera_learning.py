"""Does the camera path learn? Two 640x480 cameras whose content sets two joints, trained on a CPU in a fixed
wall-clock budget, against blind predictors and LeRobot's `diffusion` at its defaults.

    python benchmarks/camera_learning.py --workdir runs/camera_learning [--minutes 28] [--batch-size 8]
                                         [--hold 8 16] [--held-out 4] [--curve 500]
                                         [--json benchmarks/results/camera_learning_cpu.json]

1. Data (diffusion_plus_tools/so100_synthetic.py, 480x640 PNG frames): a training set and a held-out set with
   other seeds. `shoulder_pan` points at the red disc of the `front` camera, `wrist_flex` follows the green
   disc of `wrist`. A disc jumps to a random place every 8 to 15 frames (`--hold 8 16`) and drifts slowly in
   between, so on the frame of a jump only the image says where these two joints go. With the default most
   16-action chunks contain a later jump that no observation predicts; `--hold 24 41` keeps a disc in place
   for longer than a chunk, as objects on a table stay put.
2. Training: `lerobot-train`, one policy after the other, each stopped after the same wall-clock budget and
   evaluated at its last checkpoint (with `--curve N`, also at every N steps). diffusion_plus with the CPU
   settings README gives for a robot (`n_obs_steps=1`, `resize_shape=[120,160]`, U-Net 64/128/256) plus
   `noise_samples_per_observation=4` and learning rate 5e-4; LeRobot's `diffusion` at its defaults
   except `pretrained_backbone_weights=null` (offline: no ImageNet download). Same batch, data and seed; both
   warm the learning rate up over 50 steps instead of 500 (a budget of minutes is hundreds of steps) and
   read the data streaming.
3. Held-out error, in degrees, of the first predicted action on the two image-driven joints: on every frame
   of a jump (where the current position is more than 2 degrees off the action) and on every 4th other
   ("drift") frame. Both
   policies get the held-out observation windows through `predict_action_chunk`, LeRobot's with DDIM-10
   (its default DDPM-100 would take hours on this CPU). Beside them two blind predictors: "hold" (the current
   position: right while a disc drifts, wrong at every jump) and "mean" (the training set's mean action).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from diffusion_plus_tools import lerobot_cli, so100_synthetic
from lerobot_policy_diffusion_plus import score as scorer

JOINTS = {"shoulder_pan": so100_synthetic.PAN, "wrist_flex": so100_synthetic.FLEX}
JUMP_DEGREES = 2.0
EPISODES, HELD_OUT, FRAMES = 30, 4, 60  # the data's default size: training episodes, held-out ones, frames each
# A budget of minutes is hundreds of steps: both warm the learning rate up over 50 steps, not 500. Both
# stream the data: LeRobot's random access decodes both 640x480 frames of every row of the 16-action window
# (0.46 s per sample here), streaming decodes each frame once.
WARMUP = ["--policy.scheduler_warmup_steps=50", "--dataset.streaming=true"]
# README's CPU robot settings (a small working size and U-Net), four noise draws per encoded observation (the
# ResNet is most of a step, so the denoiser learns from four noise levels for little more time), and a
# learning rate of 5e-4 for batch 8 in a budget of minutes.
OURS = ["--policy.n_obs_steps=1", "--policy.resize_shape=[120,160]", "--policy.down_dims=[64,128,256]",
        "--policy.n_action_steps=8", "--policy.noise_samples_per_observation=4", "--policy.optimizer_lr=5e-4",
        *WARMUP]
THEIRS = ["--policy.pretrained_backbone_weights=null", *WARMUP]


def make_data(work: Path, episodes: int = EPISODES, held_out: int = HELD_OUT, frames: int = FRAMES,
              hold: tuple[int, int] = so100_synthetic.HOLD) -> tuple[Path, Path]:
    """The training and held-out sets under `work`, written when absent; their folder names carry every
    setting that differs from the defaults, so that data of other settings is never reused."""
    suffix = "" if tuple(hold) == so100_synthetic.HOLD else f"_hold{hold[0]}-{hold[1]}"
    if (episodes, held_out, frames) != (EPISODES, HELD_OUT, FRAMES):
        suffix += f"_{episodes}x{frames}_{held_out}"
    train, test = work / f"train{suffix}", work / f"held_out{suffix}"
    for root, n, seed in ((train, episodes, 0), (test, held_out, 1)):
        if not (root / "meta" / "info.json").exists():
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.time()
            so100_synthetic.write(root, episodes=n, frames=frames, seed=seed, hold=tuple(hold))
            print(f"wrote {root} ({n} episodes x {frames} frames) in {time.time() - t0:.0f} s", flush=True)
    return train, test


def checkpoints(out: Path) -> list[Path]:
    done = [p for p in (out / "checkpoints").glob("[0-9]*") if (p / "pretrained_model" / "model.safetensors").exists()]
    return sorted(done, key=lambda p: int(p.name))


def train(policy_type: str, data: Path, work: Path, args) -> dict:
    """lerobot-train for `args.minutes`, keeping the newest complete checkpoint (LeRobot's defaults save 3 GB
    each) and, with `args.curve`, the weights of every checkpoint whose step is a multiple of it."""
    out = work / policy_type
    kept = checkpoints(out) if args.reuse else []
    if kept:
        return {"checkpoint": kept[-1], "steps": int(kept[-1].name), "train_wall_s": None}
    shutil.rmtree(out, ignore_errors=True)
    steps = args.steps
    if args.recipe and policy_type == "diffusion_plus":
        steps = steps or json.loads(args.recipe.read_text()).get("steps", 0)
        # The recipe file as a user passes it; the budget and save frequency of this run on top.
        extra = [f"--config_path={args.recipe}", *args.flags]
    else:
        extra = (OURS + args.flags if policy_type == "diffusion_plus" else THEIRS + args.diffusion_flags)
    extra += ["--save_checkpoint=true"]
    flags = lerobot_cli.train_flags(
        policy_type, data, out, steps=steps or 1_000_000, batch_size=args.batch_size,
        save_freq=args.save_freq[policy_type], device="cpu", repo_id="local/so100_synth", num_workers=1,
        log_freq=10, seed=1000, extra=extra)
    start = time.time()

    def done() -> bool:
        for old in checkpoints(out)[:-1]:
            if args.curve and int(old.name) % args.curve == 0:
                shutil.rmtree(old / "training_state", ignore_errors=True)  # the optimizer: not needed to act
            else:
                shutil.rmtree(old)
        return not steps and time.time() - start > args.minutes * 60

    log = work / f"{policy_type}.log"
    try:
        wall = lerobot_cli.run([str(lerobot_cli.default_bin() / "lerobot-train"), *flags], log,
                               threads=args.threads, done=done, mode="w")
    except SystemExit:
        # LeRobot's defaults may not fit this machine at all: that is a result, not a reason to stop.
        last = [line for line in log.read_text(errors="replace").splitlines() if "Error" in line][-1:]
        return {"error": f"lerobot-train failed after {time.time() - start:.0f} s: {' '.join(last)[:200]}"}
    kept = checkpoints(out)
    if not kept:
        raise SystemExit(f"{policy_type}: no checkpoint within {args.minutes} minutes; raise --minutes or lower "
                         f"the save frequency (see {log})")
    return {"checkpoint": kept[-1], "steps": int(kept[-1].name), "train_wall_s": round(wall)}


def actions_and_states(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every frame's action and current position (frames, 6), without decoding images."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    frames = LeRobotDataset(repo_id="local/so100_synth", root=root).hf_dataset
    return (np.stack([np.asarray(a) for a in frames["action"]]),
            np.stack([np.asarray(s) for s in frames["observation.state"]]))


def predict(checkpoint: Path, root: Path, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """First action of the chunk predicted at each of `frames`, unnormalised: (len(frames), 6), with DDIM-10,
    as diffusion-plus-score predicts (lerobot_policy_diffusion_plus/score.py)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    policy, pre, post = scorer.load_policy(checkpoint / "pretrained_model", "cpu", "DDIM-10")
    fps = LeRobotDatasetMetadata("local/so100_synth", root=root).fps
    dataset = scorer.observation_windows("local/so100_synth", root, fps, list(policy.config.input_features),
                                        policy.config.n_obs_steps)
    return scorer.predict(policy, pre, post, dataset, frames, batch_size)[2]


def scored_frames(action: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The held-out frames that are scored (every jump frame, and every 4th other one) and, for each, whether it
    is a jump: a pointing joint's action more than JUMP_DEGREES from its current position."""
    jump = (np.abs(action - state)[:, list(JOINTS.values())] > JUMP_DEGREES).any(axis=1)
    frames = np.flatnonzero(jump | (np.arange(len(action)) % 4 == 0))
    return frames, jump[frames]


def errors(pred: np.ndarray, action: np.ndarray, jump: np.ndarray) -> dict:
    err = np.abs(pred - action)
    row = {}
    for name, j in JOINTS.items():
        row[f"{name}_jump_deg"] = round(float(err[jump, j].mean()), 2)
        row[f"{name}_drift_deg"] = round(float(err[~jump, j].mean()), 2)
    return row


def print_errors(name: str, r: dict, extra: str = "") -> None:
    print(f"{name:38s} pan jump {r['shoulder_pan_jump_deg']:6.2f} drift {r['shoulder_pan_drift_deg']:6.2f}"
          f"   flex jump {r['wrist_flex_jump_deg']:6.2f} drift {r['wrist_flex_drift_deg']:6.2f}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=28.0, help="training budget of each policy")
    parser.add_argument("--steps", type=int, default=0,
                        help="train this many steps (the schedule's length) instead of --minutes")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="train diffusion_plus with this lerobot-train --config_path file instead of its flags")
    # One string each (argparse reads a value that starts with "--" as an option): --flags="--policy.x=1 ...".
    parser.add_argument("--flags", type=shlex.split, default=[],
                        help='more lerobot-train flags for diffusion_plus, as one argument: --flags="..."')
    parser.add_argument("--diffusion-flags", type=shlex.split, default=[],
                        help="more lerobot-train flags for LeRobot's diffusion (e.g. equal settings), as one "
                             'argument: --diffusion-flags="..."')
    parser.add_argument("--episodes", type=int, default=EPISODES)
    parser.add_argument("--held-out", type=int, default=HELD_OUT)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--hold", type=int, nargs=2, default=so100_synthetic.HOLD, metavar=("MIN", "END"),
                        help="a disc stays MIN to END - 1 frames before it jumps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["diffusion_plus", "diffusion"])
    # Often enough that the budget ends close to a save: LeRobot's defaults take about a minute a step here.
    parser.add_argument("--save-freq", type=int, nargs=2, default=(100, 2), metavar=("OURS", "DIFFUSION"))
    parser.add_argument("--reuse", action="store_true", help="evaluate a policy's existing checkpoint, no training")
    parser.add_argument("--curve", type=int, default=0, metavar="STEPS",
                        help="also keep and evaluate the weights every STEPS steps (a multiple of the save frequency)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.save_freq = {"diffusion_plus": args.save_freq[0], "diffusion": args.save_freq[1]}
    if args.curve and any(args.curve % args.save_freq[p] for p in args.policies):
        parser.error(f"--curve {args.curve} must be a multiple of the save frequency {args.save_freq}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    train_root, test_root = make_data(args.workdir, args.episodes, args.held_out, args.frames, args.hold)

    action, state = actions_and_states(test_root)
    frames, jump = scored_frames(action, state)
    action, state = action[frames], state[frames]
    train_mean = actions_and_states(train_root)[0].mean(0)
    rows = [
        {"predictor": "hold (blind: the current position)", **errors(state, action, jump)},
        {"predictor": "mean (blind: the training mean)",
         **errors(np.broadcast_to(train_mean, action.shape), action, jump)},
    ]

    def score(checkpoint: Path) -> dict:
        return errors(predict(checkpoint, test_root, frames, args.batch_size), action, jump)

    for policy_type in args.policies:
        run = train(policy_type, train_root, args.workdir, args)
        if "error" in run:
            rows.append({"predictor": policy_type, **run})
            continue
        t0 = time.time()
        final = score(run["checkpoint"])
        row = {"predictor": policy_type, "steps": run["steps"], "train_wall_s": run["train_wall_s"],
               "eval_s": round(time.time() - t0), **final}
        if args.curve:
            earlier = [c for c in checkpoints(args.workdir / policy_type)
                       if int(c.name) % args.curve == 0 and int(c.name) < run["steps"]]
            row["curve"] = [{"steps": int(c.name), **score(c)} for c in earlier]
        rows.append(row)
    print(f"held-out: {int(jump.sum())} jump frames, {int((~jump).sum())} drift frames; mean absolute error, degrees")
    for r in rows:
        if "error" in r:
            print(f"{r['predictor']:38s} {r['error']}")
            continue
        for point in r.get("curve", []):
            print_errors(f"{r['predictor']} at step {point['steps']}", point)
        print_errors(r["predictor"], r, f"  ({r['steps']} steps in {r['train_wall_s']} s)" if "steps" in r else "")
    if args.json and args.json.exists():
        # Policies not trained this time keep their row from the file, with its date.
        old = json.loads(args.json.read_text())
        present = {r["predictor"] for r in rows}
        rows += [{**r, "date": r.get("date", old["date"])} for r in old["rows"] if r["predictor"] not in present]
    if args.json:
        meta = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%d"), "args": {k: str(v) for k, v in vars(args).items()},
                "jump_frames": int(jump.sum()), "drift_frames": int((~jump).sum())}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
