"""What the PushT data builders share: gym-pusht's keypoint layout and the LeRobotDataset features.

The 16-d `observation.environment_state` is exactly what gym-pusht's `get_keypoints` returns for a block
pose (the 8 vertices of the T's two rectangles, rotated by the block angle and moved to the block position), so
`lerobot-eval --env.obs_type=environment_state_agent_pos` feeds a policy what it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FPS = 10
TASK = "Push the T-shaped block onto the T-shaped target."
IMAGE_SHAPE = (96, 96, 3)


def tee_local_vertices() -> np.ndarray:
    """(8, 2) vertices of the T in its body frame, in the order gym-pusht's shapes report them."""
    import pymunk
    from gym_pusht.envs.pusht import PushTEnv

    _, shapes = PushTEnv.add_tee(pymunk.Space(), (0, 0), 0)
    return np.array([tuple(v) for shape in shapes for v in shape.get_vertices()], dtype=np.float64)


def block_keypoints(block_xy_angle: np.ndarray) -> np.ndarray:
    """(N, 3) block x, y, angle -> (N, 16) keypoints as gym-pusht computes them."""
    local = tee_local_vertices()
    x, y, a = block_xy_angle[:, 0:1], block_xy_angle[:, 1:2], block_xy_angle[:, 2:3]
    cos, sin = np.cos(a), np.sin(a)
    kx = local[None, :, 0] * cos - local[None, :, 1] * sin + x
    ky = local[None, :, 0] * sin + local[None, :, 1] * cos + y
    return np.stack([kx, ky], axis=-1).reshape(len(block_xy_angle), 16).astype(np.float32)


def dataset_features(with_images: bool, with_keypoints: bool = True) -> dict:
    features = {
        "observation.state": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
    }
    if with_keypoints:
        features["observation.environment_state"] = {
            "dtype": "float32",
            "shape": (16,),
            "names": [f"keypoint{i}_{c}" for i in range(8) for c in "xy"],
        }
    if with_images:
        features["observation.image"] = {
            "dtype": "image",
            "shape": IMAGE_SHAPE,
            "names": ["height", "width", "channel"],
        }
    return features


def create_dataset(root: Path, repo_id: str, with_images: bool, force: bool, with_keypoints: bool = True):
    """A new, empty LeRobotDataset at `root`; refuses to touch an existing one unless `force`."""
    import shutil

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if root.exists():
        if not force:
            raise SystemExit(f"error: {root} already exists; pass --force to overwrite it")
        shutil.rmtree(root)
    return LeRobotDataset.create(
        repo_id=repo_id, fps=FPS, features=dataset_features(with_images, with_keypoints), root=root, use_videos=False
    )
