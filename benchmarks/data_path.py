"""CPU cost of reading one training sample from a LeRobotDataset: random access vs streaming.

    python benchmarks/data_path.py --root DIR [--samples 1000] [--json FILE]

Reads samples the way lerobot-train does for the default `diffusion_plus` config (2 observation steps, a
16-step action window, so every key is queried at several time offsets) in this process, one thread, and prints the mean
milliseconds per sample of `LeRobotDataset` (random access to --samples frames, lerobot-train's default)
and of `StreamingLeRobotDataset` (`--dataset.streaming=true`; one full pass, its shuffle buffer's fill
included), after checking that both give the same tensors for the same frames. On a 2-core machine the
data workers share the cores with training, so this cost comes out of the training step's budget.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def delta_timestamps(root: Path) -> dict[str, list[float]]:
    """The windows lerobot-train asks for with the default `diffusion_plus` config, resolved by LeRobot."""
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from lerobot_policy_diffusion_plus import DiffusionPlusConfig

    return resolve_delta_timestamps(DiffusionPlusConfig(), LeRobotDatasetMetadata("local/bench", root=root))


def random_access(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/bench", root=root, delta_timestamps=delta_timestamps(root))


def streaming(root: Path):
    from lerobot.datasets.streaming_dataset import StreamingLeRobotDataset

    return StreamingLeRobotDataset("local/bench", root=root, max_num_shards=1,
                                   delta_timestamps=delta_timestamps(root))


def same_windows(root: Path, n: int = 50) -> bool:
    """Both readers give the same tensors (windows and padding masks) for the same frame: equal work."""
    import torch

    ds, it = random_access(root), iter(streaming(root))
    for _ in range(n):
        streamed = next(it)
        reference = ds[int(streamed["index"])]
        for key, value in streamed.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and not torch.equal(value, reference[key]):
                return False
    return True


def random_access_ms(root: Path, samples: int) -> float:
    ds = random_access(root)
    rng = random.Random(0)
    for _ in range(20):  # warm-up: caches, lazy imports
        ds[rng.randrange(len(ds))]
    start = time.perf_counter()
    for _ in range(samples):
        ds[rng.randrange(len(ds))]
    return (time.perf_counter() - start) / samples * 1e3


def streaming_ms(root: Path) -> float:
    """One full pass, filling the 1000-frame shuffle buffer included, per frame read."""
    start, count = time.perf_counter(), 0
    for _ in streaming(root):
        count += 1
    return (time.perf_counter() - start) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a local LeRobotDataset")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.samples < 1:
        parser.error(f"--samples must be >= 1, got {args.samples}")
    import torch

    torch.set_num_threads(1)
    result = {
        "root": str(args.root), "samples": args.samples,
        "random_access_ms_per_sample": round(random_access_ms(args.root, args.samples), 2),
        "streaming_ms_per_sample": round(streaming_ms(args.root), 2),
        "same_windows": same_windows(args.root),
        "date": time.strftime("%Y-%m-%d"),
    }
    result["ratio"] = round(result["random_access_ms_per_sample"] / result["streaming_ms_per_sample"], 1)
    if not result["same_windows"]:
        raise SystemExit("the two readers disagree on some frame's windows; the timing would compare unequal work")
    print(f"random access {result['random_access_ms_per_sample']} ms/sample, "
          f"streaming {result['streaming_ms_per_sample']} ms/sample ({result['ratio']}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
