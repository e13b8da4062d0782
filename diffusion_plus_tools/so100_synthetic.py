"""A small SO-100-shaped LeRobotDataset with no arm: smooth joint motions and two cameras that matter.

It has exactly the features `lerobot-record` writes for an `so100_follower` with two 480x640 cameras,
`front` and `wrist` (6 joint positions as state and action, `observation.images.<camera>` as HWC uint8),
so a policy trained on it runs on `--robot.type=so100_dryrun` with the same cameras. For checking the
training/rollout plumbing with real-sized images, not for measuring success.

What depends on what (per frame i; the command leads the measured position by one step, as with a
position-controlled arm: observation.state[i] = action[i - 1]):
- each camera shows a coloured disc, the target (the first camera's red, the second's green, as the
  dry-run robot draws them), over a fixed gradient. It is put at a random place every 8 to 15 frames
  (`--hold`) and drifts slowly in between (`blob_track`), independently in each camera;
- `shoulder_pan` points at the first camera's target: action = CENTRE + PAN_GAIN * (column / (W - 1) - 0.5);
- `wrist_flex` follows the last camera's target: action = CENTRE + FLEX_GAIN * (row / (H - 1) - 0.5)
  (with one camera both come from it);
- the other four joints are slow sinusoids with a random phase per episode (`joint_path`).
Where the target was moved, only the image tells where the arm must go: a policy that ignores the images
cannot predict the pointing joints there. With no camera (`--camera ''`) all six joints are sinusoids.

    python examples/so100/synthetic_dataset.py --root data/so100_synth --episodes 4 --frames 60
    python examples/so100/synthetic_dataset.py --root data/so100_small --camera front --size 96 96
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lerobot_policy_diffusion_plus.so100_dryrun import (
    BLOB_COLOURS,
    HOLD,
    MOTORS,
    blob_radius,
    blob_stamp,
    blob_track,
    check_hold,
    draw_blob,
    pattern,
)

FPS = 10
JOINTS = [f"{m}.pos" for m in MOTORS]
CAMERAS = ("front", "wrist")
HEIGHT, WIDTH = 480, 640
# Degrees for the body joints (use_degrees=True), 0..100 for the gripper, as so100_follower reports them.
CENTRE = np.array([0.0, -20.0, 20.0, 10.0, 0.0, 30.0])
AMPLITUDE = np.array([30.0, 20.0, 25.0, 20.0, 15.0, 25.0])
# Fixed periods (seconds): the position and velocity in two observations then determine the future, so a
# briefly trained policy already predicts it well (a random period per episode would be a guess).
PERIOD = np.array([4.0, 5.0, 3.0, 6.0, 4.5, 3.5])
# The joints that follow the targets, and their degrees across the whole image.
PAN, FLEX = MOTORS.index("shoulder_pan"), MOTORS.index("wrist_flex")
PAN_GAIN, FLEX_GAIN = 60.0, 40.0


def camera_names(camera: str | Sequence[str] | None) -> list[str]:
    """`camera` as a list of names: a string is one camera; None or '' none."""
    if camera is None:
        return []
    names = [camera] if isinstance(camera, str) else list(camera)
    return [n for n in names if n]


def features(camera: str | Sequence[str] | None, height: int = HEIGHT, width: int = WIDTH) -> dict:
    out = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": JOINTS},
        "action": {"dtype": "float32", "shape": (6,), "names": JOINTS},
    }
    for name in camera_names(camera):
        out[f"observation.images.{name}"] = {
            "dtype": "image", "shape": (height, width, 3), "names": ["height", "width", "channels"],
        }
    return out


def joint_path(frames: int, rng: np.random.Generator) -> np.ndarray:
    """(frames + 1, 6) smooth positions: one slow sinusoid per joint with a random phase."""
    t = np.arange(frames + 1)[:, None] / FPS
    phase = rng.uniform(0, 2 * np.pi, size=6)
    return CENTRE + AMPLITUDE * np.sin(2 * np.pi * t / PERIOD + phase)


def pointing(first: np.ndarray, last: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """shoulder_pan and wrist_flex commands for targets at `first` / `last` (..., 2) (row, column) centres
    in the first and the last camera."""
    pan = CENTRE[PAN] + PAN_GAIN * (first[..., 1] / (width - 1) - 0.5)
    flex = CENTRE[FLEX] + FLEX_GAIN * (last[..., 0] / (height - 1) - 0.5)
    return pan, flex


def write(root: Path, episodes: int = 4, frames: int = 60, camera: str | Sequence[str] | None = CAMERAS,
          height: int = HEIGHT, width: int = WIDTH, seed: int = 0, hold: tuple[int, int] = HOLD) -> Path:
    """Write the dataset to `root`; `camera`: one name, a list of names, or None for a state-only dataset;
    `hold`: a target stays `hold[0]` to `hold[1] - 1` frames before it is put elsewhere."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    check_hold(hold)  # before the dataset's folder is created
    names = camera_names(camera)
    rng = np.random.default_rng(seed)
    dataset = LeRobotDataset.create(
        repo_id="local/so100_synth", fps=FPS, features=features(names, height, width), root=root,
        robot_type="so100_follower", use_videos=False,
    )
    background = pattern(height, width)
    stamp = blob_stamp(blob_radius(height, width))
    for _ in range(episodes):
        # commands[j] is the command sent at frame j - 1 (commands[0]: where the arm starts).
        commands = joint_path(frames, rng)
        tracks = [blob_track(frames, height, width, rng, hold) for _ in names]
        if names:
            aim = [np.concatenate([t[:1], t]) for t in (tracks[0], tracks[-1])]  # frame j - 1's target
            commands[:, PAN], commands[:, FLEX] = pointing(aim[0], aim[1], height, width)
        commands = commands.astype(np.float32)
        for i in range(frames):
            row = {"observation.state": commands[i], "action": commands[i + 1], "task": "follow the path"}
            for k, name in enumerate(names):
                colour = BLOB_COLOURS[k % len(BLOB_COLOURS)]
                row[f"observation.images.{name}"] = draw_blob(background, tracks[k][i], colour, stamp)
            dataset.add_frame(row)
        dataset.save_episode()
    dataset.finalize()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--camera", nargs="+", default=list(CAMERAS),
                        help="camera names (default: front wrist); '' for a state-only dataset")
    parser.add_argument("--size", type=int, nargs=2, default=(HEIGHT, WIDTH), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hold", type=int, nargs=2, default=HOLD, metavar=("MIN", "END"),
                        help="a target stays MIN to END - 1 frames before it is put elsewhere")
    args = parser.parse_args()
    if args.root.exists():
        raise SystemExit(f"error: {args.root} already exists")
    write(args.root, args.episodes, args.frames, args.camera, *args.size, seed=args.seed, hold=tuple(args.hold))
    print(f"wrote {args.episodes} episodes / {args.episodes * args.frames} frames to {args.root}")


if __name__ == "__main__":
    main()
