"""Action smoothness at chunk boundaries: sync vs real-time chunking, one checkpoint, simulated clock.

The dry-run SO-100 is driven tick by tick the way lerobot-rollout drives a robot, with inference latency
simulated as a whole number of ticks so that runs are deterministic and independent of the machine's load:
- sync: `select_action` every tick (a new chunk every n_action_steps; the robot waits for inference);
- async: LeRobot's RTC queue (`ActionQueue`, the engine's padding of the left-over), inference back to back,
  the robot executing the old chunk for `delay` ticks while the next one is computed, without guidance
  (prev_chunk_left_over=None) or with it (our RTC, LINEAR or EXP weights).
Figures, in the robot's units (degrees, gripper 0-100): the largest and mean jump |a_t - a_t-1| (max over
joints) at the ticks where a new chunk takes over, and the mean |third difference| of the executed actions
(jerk per tick^3), over all runs.

    python benchmarks/rtc_smoothness.py                      # trains a small state-only checkpoint first
    python benchmarks/rtc_smoothness.py --checkpoint DIR     # an existing SO-100 state-only checkpoint
    python benchmarks/rtc_smoothness.py --distill-steps 300  # also its one-step student, measured alike
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffusion_plus_tools import lerobot_cli
from diffusion_plus_tools.so100_synthetic import CENTRE, joint_path, write


def synthetic_data(work: Path) -> Path:
    return write(work / "data", episodes=8, frames=80, camera=None)


def train(work: Path, steps: int) -> Path:
    data = synthetic_data(work)
    out = work / "train"
    flags = lerobot_cli.train_flags(
        "diffusion_plus", data, out, steps=steps, batch_size=32, save_freq=steps, repo_id="local/so100_synth",
        log_freq=steps, seed=1, extra=["--policy.n_obs_steps=1", "--policy.down_dims=[32,64,128]", "--policy.diffusion_step_embed_dim=32",
                                       "--policy.optimizer_lr=2e-3", "--policy.scheduler_warmup_steps=50"])
    lerobot_cli.run([str(lerobot_cli.default_bin() / "lerobot-train"), *flags], work / "train.log")
    return out / "checkpoints" / "last" / "pretrained_model"


def distill(work: Path, teacher: Path, steps: int) -> Path:
    """A one-step student of `teacher`, distilled with lerobot-train on the same synthetic data."""
    data = work / "data" if (work / "data").exists() else synthetic_data(work)
    out = work / "distill"
    flags = lerobot_cli.train_flags(
        None, data, out, steps=steps, batch_size=32, save_freq=steps, repo_id="local/so100_synth",
        log_freq=steps, seed=1, extra=[f"--policy.path={teacher}", f"--policy.distill_teacher_path={teacher}",
                                       "--policy.scheduler_warmup_steps=50"])
    lerobot_cli.run([str(lerobot_cli.default_bin() / "lerobot-train"), *flags], work / "distill.log")
    return out / "checkpoints" / "last" / "pretrained_model"


class Rig:
    """A loaded checkpoint, its processors and a connected dry-run robot, stepped by hand."""

    def __init__(self, checkpoint: Path, work: Path, n_action_steps: int):
        from lerobot.configs import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.utils.feature_utils import hw_to_dataset_features

        from lerobot_policy_diffusion_plus import SO100Dryrun, SO100DryrunConfig

        cfg = PreTrainedConfig.from_pretrained(checkpoint)
        if cfg.distilled_steps is None:  # a distilled student keeps its own sampler (one step)
            cfg.noise_scheduler_type, cfg.num_inference_steps = "DDIM", 10
        cfg.device = "cpu"
        cfg.n_action_steps = n_action_steps
        self.policy = get_policy_class(cfg.type).from_pretrained(checkpoint, config=cfg).eval()
        self.pre, self.post = make_pre_post_processors(cfg, pretrained_path=str(checkpoint))
        self.robot = SO100Dryrun(SO100DryrunConfig(calibration_dir=work))
        self.robot.connect()
        self.hw_features = hw_to_dataset_features(self.robot.observation_features, "observation")
        self.keys = list(self.robot.action_features)

    def reset(self, seed: int, start: np.ndarray) -> None:
        torch.manual_seed(seed)
        self.policy.reset()
        self.pre.reset()
        self.post.reset()
        self.send(torch.from_numpy(start))

    def observe(self) -> dict:
        from lerobot.policies.utils import prepare_observation_for_inference
        from lerobot.utils.feature_utils import build_dataset_frame

        frame = build_dataset_frame(self.hw_features, self.robot.get_observation(), prefix="observation")
        batch = prepare_observation_for_inference(frame, torch.device("cpu"), "follow the path", "so100_dryrun")
        return self.pre(batch)

    def send(self, action: torch.Tensor) -> None:
        self.robot.send_action({k: float(v) for k, v in zip(self.keys, action)})


def run_sync(rig: Rig, ticks: int) -> tuple[np.ndarray, np.ndarray]:
    actions = []
    for _ in range(ticks):
        with torch.no_grad():
            action = rig.post(rig.policy.select_action(rig.observe())).squeeze(0)
        rig.send(action)
        actions.append(action.numpy())
    n = rig.policy.config.n_action_steps
    return np.stack(actions), np.arange(ticks) // n


def run_async(rig: Rig, ticks: int, delay: int, schedule: str | None) -> tuple[np.ndarray, np.ndarray]:
    """LeRobot's RTC engine loop with a latency of exactly `delay` ticks; schedule None: no guidance."""
    from lerobot.policies.rtc import ActionQueue
    from lerobot.policies.rtc.configuration_rtc import RTCConfig
    from lerobot.rollout.inference.rtc import _normalize_prev_actions_length

    rtc_config = RTCConfig(prefix_attention_schedule=schedule or "LINEAR")
    rig.policy.config.rtc_config = rtc_config
    queue = ActionQueue(rtc_config)
    actions, chunk_ids, merges, first = [], [], 0, True
    while len(actions) < ticks:
        idx_before = queue.get_action_index()
        prev = queue.get_left_over()
        if prev is not None:
            prev = _normalize_prev_actions_length(prev, rtc_config.execution_horizon)
        with torch.no_grad():
            chunk = rig.policy.predict_action_chunk(
                rig.observe(), inference_delay=0 if first else delay,
                prev_chunk_left_over=prev if schedule else None,
            )
        first = False
        for _ in range(delay):  # the robot keeps executing the previous chunk meanwhile
            action = queue.get()
            if action is not None:
                rig.send(action)
                actions.append(action.numpy())
                chunk_ids.append(merges)
        queue.merge(chunk.squeeze(0), rig.post(chunk).squeeze(0), delay, idx_before)
        merges += 1
    return np.stack(actions[:ticks]), np.array(chunk_ids[:ticks])


def open_loop_error(rig: Rig, episodes: int = 3) -> float:
    """Mean |chunk - demo| (robot units) from demo-like observations: how well the checkpoint is trained."""
    rng, errors = np.random.default_rng(123), []
    n = rig.policy.config.n_action_steps
    for _ in range(episodes):
        path = joint_path(40, rng).astype(np.float32)
        for t in range(1, 40 - n):
            rig.policy.reset()
            batch = rig.pre({"observation.state": torch.from_numpy(path[t : t + 1]).unsqueeze(0), "task": ["x"]})
            with torch.no_grad():
                chunk = rig.post(rig.policy.predict_action_chunk(batch)).squeeze(0).numpy()
            errors.append(np.abs(chunk - path[t + 1 : t + 1 + n]).mean())
    return float(np.mean(errors))


def smoothness(runs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    jumps, jerks = [], []
    for actions, ids in runs:
        step = np.abs(np.diff(actions, axis=0)).max(axis=1)
        jumps.extend(step[ids[1:] != ids[:-1]])
        jerks.append(np.abs(np.diff(actions, n=3, axis=0)).mean())
    return {"max_jump": float(np.max(jumps)), "mean_jump": float(np.mean(jumps)), "jerk": float(np.mean(jerks))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--ticks", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--delays", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--distill-steps", type=int, default=0, help="also distil the checkpoint into a "
                        "one-step student for this many steps and measure the student the same way")
    parser.add_argument("--n-action-steps", type=int, default=8,
                        help="actions per chunk (BENCHMARKS.md's table: 8; the policies' default is 4)")
    args = parser.parse_args()
    if not all(1 <= d < args.n_action_steps for d in args.delays):
        # A delay of a whole chunk or more leaves nothing to execute: the queue never fills.
        parser.error(f"--delays must be 1..--n-action-steps - 1 = {args.n_action_steps - 1}, got {args.delays}")
    torch.set_num_threads(1)
    # The engine's queue warns whenever fewer actions were consumed than the delay (always, on the first
    # chunk of a run); here the delay is exact by construction.
    logging.getLogger("lerobot.policies.rtc.action_queue").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="rtc_smoothness_"))
    t0 = time.perf_counter()
    checkpoint = args.checkpoint or train(work, args.train_steps)
    print(f"checkpoint {checkpoint} ({time.perf_counter() - t0:.0f} s)")
    checkpoints = [("DDIM-10", checkpoint)]
    if args.distill_steps:
        t0 = time.perf_counter()
        checkpoints.append(("one-step student", distill(work, checkpoint, args.distill_steps)))
        print(f"student {checkpoints[-1][1]} ({time.perf_counter() - t0:.0f} s)")
    for label, path in checkpoints:
        measure(Rig(path, work, args.n_action_steps), label, args)


def measure(rig: Rig, label: str, args) -> None:
    t0 = time.perf_counter()
    latencies = []
    for _ in range(5):
        start = time.perf_counter()
        with torch.no_grad():
            rig.policy.predict_action_chunk(rig.observe())
        latencies.append(time.perf_counter() - start)
    print(f"{label}: chunk latency on this machine (1 thread): median {1000 * np.median(latencies):.0f} ms")

    print(f"open-loop error of the checkpoint on demo paths: {open_loop_error(rig):.2f} (mean |chunk - demo|)")
    demo = joint_path(1000, np.random.default_rng(0))
    steps = np.abs(np.diff(demo, axis=0)).max(axis=1)
    jerk = np.abs(np.diff(demo, n=3, axis=0)).mean()
    print(f"demo reference: largest step {steps.max():.2f}, mean step {steps.mean():.2f}, mean jerk {jerk:.3f}")
    modes = [("sync", None, None)]
    for d in args.delays:
        modes += [(f"async, no guidance, delay {d}", d, None), (f"RTC LINEAR, delay {d}", d, "LINEAR"),
                  (f"RTC EXP, delay {d}", d, "EXP")]
    print(f"| mode ({label}) | max jump at chunk boundary | mean jump at boundary | mean jerk per tick^3 |")
    print("|---|---|---|---|")
    for name, delay, schedule in modes:
        runs = []
        for seed in range(args.seeds):
            rig.reset(seed, CENTRE)
            if delay is None:
                runs.append(run_sync(rig, args.ticks))
            else:
                runs.append(run_async(rig, args.ticks, delay, schedule))
        m = smoothness(runs)
        print(f"| {name} | {m['max_jump']:.2f} | {m['mean_jump']:.2f} | {m['jerk']:.3f} |", flush=True)
    print(f"({args.seeds} runs x {args.ticks} ticks per mode, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
