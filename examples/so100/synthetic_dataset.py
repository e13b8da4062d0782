"""A small SO-100-shaped LeRobotDataset with no arm: smooth joint motions and one synthetic camera.

It has exactly the features `lerobot-record` writes for an `so100_follower` with one camera (6 joint
positions as state and action, `observation.images.<camera>`), so a policy trained on it runs on
`--robot.type=so100_dryrun` with the same camera. For checking the training/rollout plumbing only: the
motions are sinusoids, the images are the dry-run robot's gradient pattern.

    python examples/so100/synthetic_dataset.py --root data/so100_synth --episodes 4 --frames 60
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lerobot_policy_diffusion_plus.so100_dryrun import MOTORS, _pattern

FPS = 10
JOINTS = [f"{m}.pos" for m in MOTORS]
# Degrees for the body joints (use_degrees=True), 0..100 for the gripper, as so100_follower reports them.
CENTRE = np.array([0.0, -20.0, 20.0, 10.0, 0.0, 30.0])
AMPLITUDE = np.array([30.0, 20.0, 25.0, 20.0, 15.0, 25.0])
# Fixed periods (seconds): the position and velocity in two observations then determine the future, so a
# briefly trained policy already predicts it well (a random period per episode would be a guess).
PERIOD = np.array([4.0, 5.0, 3.0, 6.0, 4.5, 3.5])


def features(camera: str | None, height: int, width: int) -> dict:
    out = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": JOINTS},
        "action": {"dtype": "float32", "shape": (6,), "names": JOINTS},
    }
    if camera:
        out[f"observation.images.{camera}"] = {
            "dtype": "image", "shape": (height, width, 3), "names": ["height", "width", "channels"],
        }
    return out


def joint_path(frames: int, rng: np.random.Generator) -> np.ndarray:
    """(frames + 1, 6) smooth positions: one slow sinusoid per joint with a random phase."""
    t = np.arange(frames + 1)[:, None] / FPS
    phase = rng.uniform(0, 2 * np.pi, size=6)
    return CENTRE + AMPLITUDE * np.sin(2 * np.pi * t / PERIOD + phase)


def write(root: Path, episodes: int = 4, frames: int = 60, camera: str | None = "front", height: int = 32,
          width: int = 32, seed: int = 0) -> Path:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    rng = np.random.default_rng(seed)
    dataset = LeRobotDataset.create(
        repo_id="local/so100_synth", fps=FPS, features=features(camera, height, width), root=root,
        robot_type="so100_follower", use_videos=False,
    )
    frame = _pattern(height, width)
    for _ in range(episodes):
        path = joint_path(frames, rng).astype(np.float32)
        for i in range(frames):
            # The command leads the measured position by one step, as with a position-controlled arm.
            row = {"observation.state": path[i], "action": path[i + 1], "task": "follow the path"}
            if camera:
                row[f"observation.images.{camera}"] = np.roll(frame, i, axis=1)
            dataset.add_frame(row)
        dataset.save_episode()
    dataset.finalize()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--camera", default="front", help="camera name; '' for a state-only dataset")
    parser.add_argument("--size", type=int, nargs=2, default=(32, 32), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.root.exists():
        raise SystemExit(f"error: {args.root} already exists")
    write(args.root, args.episodes, args.frames, args.camera, *args.size, seed=args.seed)
    print(f"wrote {args.episodes} episodes / {args.episodes * args.frames} frames to {args.root}")


if __name__ == "__main__":
    main()
