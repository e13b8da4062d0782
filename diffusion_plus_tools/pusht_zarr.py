"""Convert the original Diffusion Policy PushT zarr store into a LeRobotDataset (v3).

    python examples/pusht/convert_zarr.py --zarr ../shared/data/pusht_cchi_v7_replay.zarr --root DIR \
        [--episodes N] [--no-images | --no-keypoints] [--force]

Writes observation.state (agent xy), observation.environment_state (gym-pusht's 16 keypoints of the block
pose in data/state, unless --no-keypoints), observation.image (96x96 uint8, unless --no-images), action and
the task string, at 10 fps. `--no-keypoints` gives the layout of the Hub's `lerobot/pusht` (image + agent xy),
which an image policy needs: every observation it trains on must also come from
`lerobot-eval --env.obs_type=pixels_agent_pos`. Images are read a chunk at a time: the whole array is 2.8 GB
as float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffusion_plus_tools.pusht_data import TASK, block_keypoints, create_dataset

REQUIRED = ("data/state", "data/action", "meta/episode_ends")
IMAGE_CHUNK = 1024


def open_store(path: Path, with_images: bool):
    """Open the store and check it before writing anything: arrays present, lengths agree, values finite."""
    import zarr

    if not path.exists():
        raise SystemExit(f"error: zarr store {path} does not exist")
    store = zarr.open(str(path), mode="r")
    required = REQUIRED + (("data/img",) if with_images else ())
    missing = [name for name in required if name not in store]
    if missing:
        raise SystemExit(f"error: zarr store {path} lacks array(s) {missing} (needs {list(required)})")
    state, action = store["data/state"][:], store["data/action"][:]
    ends = store["meta/episode_ends"][:].astype(np.int64)
    n = len(state)
    lengths = {"data/state": n, "data/action": len(action)}
    if with_images:
        lengths["data/img"] = store["data/img"].shape[0]
    if len(set(lengths.values())) != 1:
        raise SystemExit(f"error: zarr store {path} has mismatched lengths {lengths}")
    if len(ends) == 0 or ends[-1] != n or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        raise SystemExit(f"error: meta/episode_ends must increase strictly and end at {n}, got {ends[:3]}...{ends[-3:]}")
    for name, arr in (("data/state", state), ("data/action", action)):
        if not np.isfinite(arr).all():
            raise SystemExit(f"error: {name} in {path} has non-finite values")
    return store, state, action, ends


def convert(zarr_path: Path, root: Path, episodes: int | None, with_images: bool, force: bool,
            repo_id: str = "local/pusht", with_keypoints: bool = True) -> int:
    store, state, action, ends = open_store(Path(zarr_path), with_images)
    if episodes is not None:
        ends = ends[:episodes]
    keypoints = block_keypoints(state[:, 2:5])
    dataset = create_dataset(root, repo_id, with_images, force, with_keypoints)
    images = store["data/img"] if with_images else None
    cache_start, cache = 0, None
    start = 0
    with tqdm(total=int(ends[-1]), desc="frames", unit="fr") as bar:
        for end in ends:
            for i in range(start, end):
                frame = {
                    "observation.state": state[i, :2].astype(np.float32),
                    "action": action[i].astype(np.float32),
                    "task": TASK,
                }
                if with_keypoints:
                    frame["observation.environment_state"] = keypoints[i]
                if images is not None:
                    if cache is None or i >= cache_start + len(cache):
                        cache_start = i
                        cache = images[i : i + IMAGE_CHUNK]
                        if not np.isfinite(cache).all():
                            raise SystemExit(f"error: data/img has non-finite values near frame {i}")
                    frame["observation.image"] = np.clip(cache[i - cache_start], 0, 255).astype(np.uint8)
                dataset.add_frame(frame)
                bar.update(1)
            dataset.save_episode()
            start = end
    dataset.finalize()
    print(f"wrote {len(ends)} episodes / {int(ends[-1])} frames to {root}")
    return int(ends[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zarr", type=Path, required=True, help="path to pusht_cchi_v7_replay.zarr")
    parser.add_argument("--root", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--episodes", type=int, default=None, help="convert only the first N episodes")
    parser.add_argument("--no-images", action="store_true", help="skip observation.image (keypoints only)")
    parser.add_argument("--no-keypoints", action="store_true",
                        help="skip observation.environment_state (image + agent xy, as lerobot/pusht)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --root")
    parser.add_argument("--repo-id", default="local/pusht")
    args = parser.parse_args(argv)
    if args.episodes is not None and args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.no_images and args.no_keypoints:
        parser.error("--no-images and --no-keypoints together leave only the agent's position to observe")
    convert(args.zarr, args.root, args.episodes, not args.no_images, args.force, args.repo_id,
            not args.no_keypoints)


if __name__ == "__main__":
    main()
