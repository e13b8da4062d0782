"""CPU cost of reading one training sample from a LeRobotDataset: random access vs streaming.

    python benchmarks/data_path.py --root DIR [--samples 1000] [--json FILE]

Reads samples the way lerobot-train does for a diffusion policy (2 observation steps, a 16-step action
window, so every key is queried at several time offsets) in this process, one thread, and prints the mean
milliseconds per sample of `LeRobotDataset` (random access, lerobot-train's default) and of
`StreamingLeRobotDataset` (`--dataset.streaming=true`). On a 2-core machine the data workers share the cores
with training, so this cost is paid out of the training step's budget.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def delta_timestamps(fps: int, meta_features: dict) -> dict[str, list[float]]:
    obs = [-1 / fps, 0.0]  # n_obs_steps = 2
    window = {key: obs for key in meta_features if key.startswith("observation.")}
    window["action"] = [i / fps for i in range(-1, 15)]  # horizon 16, starting one step back
    return window


def random_access_ms(root: Path, samples: int) -> float:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    meta = LeRobotDataset("local/bench", root=root).meta
    ds = LeRobotDataset("local/bench", root=root, delta_timestamps=delta_timestamps(meta.fps, meta.features))
    rng = random.Random(0)
    for _ in range(20):  # warm-up: caches, lazy imports
        ds[rng.randrange(len(ds))]
    start = time.perf_counter()
    for _ in range(samples):
        ds[rng.randrange(len(ds))]
    return (time.perf_counter() - start) / samples * 1e3


def streaming_ms(root: Path, samples: int) -> float:
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.datasets.streaming_dataset import StreamingLeRobotDataset

    meta = LeRobotDatasetMetadata("local/bench", root=root)
    ds = StreamingLeRobotDataset("local/bench", root=root, max_num_shards=1,
                                 delta_timestamps=delta_timestamps(meta.fps, meta.features))
    it = iter(ds)
    for _ in range(20):
        next(it)
    start = time.perf_counter()
    for _ in range(samples):
        next(it)
    return (time.perf_counter() - start) / samples * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a local LeRobotDataset")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    result = {
        "root": str(args.root), "samples": args.samples,
        "random_access_ms_per_sample": round(random_access_ms(args.root, args.samples), 2),
        "streaming_ms_per_sample": round(streaming_ms(args.root, args.samples), 2),
        "date": time.strftime("%Y-%m-%d"),
    }
    result["ratio"] = round(result["random_access_ms_per_sample"] / result["streaming_ms_per_sample"], 1)
    print(f"random access {result['random_access_ms_per_sample']} ms/sample, "
          f"streaming {result['streaming_ms_per_sample']} ms/sample ({result['ratio']}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
