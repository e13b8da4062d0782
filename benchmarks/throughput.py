"""Training samples/s through a real `lerobot-train` run (data loading included) for diffusion_plus,
diffusion_plus_transformer and LeRobot's `diffusion` at equal settings: the same U-Net size, batch, dataset,
horizon 16 and 2 observations (LeRobot's `diffusion` defaults to horizon 64, which alone halves its rate).
`--also-defaults` adds a row of LeRobot's `diffusion` at its own horizon, labelled as such. `--compile` adds
diffusion_plus and LeRobot's `diffusion` with `--policy.compile_model=true` (each compiles its own network:
our loss, LeRobot's U-Net) at `--compile-mode`. Prints ratios.

    python benchmarks/throughput.py --dataset DIR [--steps 60] [--batch-size 64] [--down-dims 64 128 256]
                                    [--device cpu] [--threads 1] [--num-workers 1] [--json out.json]
                                    [--policies diffusion_plus diffusion ...] [--compile [--compile-mode default]]

Samples/s is LeRobot's own `smp/s` figure (batch / (update time + data time)), averaged over the log
intervals after the first (which holds warm-up, and with --compile the compilation: its extra update time
over the later intervals is reported as compile_s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
from pathlib import Path

from diffusion_plus_tools import lerobot_cli

TYPES = ["diffusion", "diffusion_plus", "diffusion_plus_transformer"]  # the first is the baseline


# LeRobot's `diffusion` set to our horizons; its other differences (normalisation, crop) do not touch
# the compute of a keypoint policy.
EQUAL = ["--policy.horizon=16", "--policy.n_obs_steps=2", "--policy.n_action_steps=8"]


def samples_per_s(policy_type: str, args, workdir: Path, own_defaults: bool = False, compile_model: bool = False):
    """(samples/s, update s per step, data wait s per step, compile s) of one lerobot-train run."""
    extra = ["--save_checkpoint=false"]
    if policy_type == "diffusion" and not own_defaults:
        extra += EQUAL
    if compile_model:
        extra += ["--policy.compile_model=true", f"--policy.compile_mode={args.compile_mode}"]
    if policy_type != "diffusion_plus_transformer":  # the transformer keeps its paper size
        extra.append(f"--policy.down_dims=[{','.join(map(str, args.down_dims))}]")
    flags = lerobot_cli.train_flags(
        policy_type, args.dataset,
        workdir / (policy_type + ("_defaults" if own_defaults else "") + ("_compiled" if compile_model else "")),
        steps=args.steps, batch_size=args.batch_size, save_freq=args.steps * 10, device=args.device,
        num_workers=args.num_workers, log_freq=args.log_freq, seed=1000, extra=extra)
    run = lerobot_cli.capture([str(lerobot_cli.default_bin() / "lerobot-train"), *flags], threads=args.threads)
    if run.returncode != 0:
        raise SystemExit(f"{policy_type}: lerobot-train failed:\n{run.stderr[-3000:]}")
    log = run.stdout + run.stderr
    rates = [float(x) for x in re.findall(r"smp/s:([0-9.]+)", log)]
    if len(rates) < 2:
        raise SystemExit(f"{policy_type}: fewer than two log lines; raise --steps or lower --log-freq")
    # Where the time goes: the optimizer update (forward, backward, step) and waiting for data.
    update = [float(x) for x in re.findall(r"updt_s:([0-9.]+)", log)]
    data = [float(x) for x in re.findall(r"data_s:([0-9.]+)", log)][1:]
    # The first interval's extra update time: compilation (plus a little warm-up, also there when eager).
    first_extra = (update[0] - statistics.mean(update[1:])) * args.log_freq
    return statistics.mean(rates[1:]), statistics.mean(update[1:]), statistics.mean(data), first_extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="LeRobotDataset root (e.g. from convert_zarr.py)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-freq", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--down-dims", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for each run (0: unset)")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=TYPES, choices=TYPES,
                        help="run order; ratios are against `diffusion` (run it too)")
    parser.add_argument("--also-defaults", action="store_true",
                        help="also run LeRobot's diffusion at its own defaults (horizon 64), labelled as such")
    parser.add_argument("--compile", action="store_true",
                        help="also run diffusion_plus and diffusion with --policy.compile_model=true")
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if "diffusion" not in args.policies:
        parser.error("--policies must include diffusion (the baseline of the ratios)")
    runs = [(t, "equal (horizon 16)", False, False) for t in args.policies]
    if args.compile:
        runs += [(t, f"equal, compiled ({args.compile_mode})", False, True)
                 for t in args.policies if t != "diffusion_plus_transformer"]
    if args.also_defaults:
        runs.append(("diffusion", "its own defaults (horizon 64)", True, False))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # An empty compile cache: the reported compile time is a first start's.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "compile_cache")
        for policy_type, label, own_defaults, compile_model in runs:
            rate, update, data, first_extra = samples_per_s(policy_type, args, Path(tmp), own_defaults, compile_model)
            rows.append({"policy": policy_type, "settings": label, "samples_per_s": round(rate, 1),
                         "update_s": round(update, 3), "data_s": round(data, 3),
                         "first_interval_extra_s": round(first_extra, 1)})
    base = rows[[r["policy"] for r in rows].index("diffusion")]["samples_per_s"]
    # Compiled rows are also compared with LeRobot's diffusion compiled the same way.
    same = {r["settings"]: r["samples_per_s"] for r in rows if r["policy"] == "diffusion"}
    for row in rows:
        row["ratio_vs_diffusion"] = round(row["samples_per_s"] / base, 3)
        row["ratio_vs_diffusion_same_settings"] = round(row["samples_per_s"] / same[row["settings"]], 3)
        print(f"{row['policy']:27s} {row['settings']:30s} {row['samples_per_s']:8.1f} samples/s  "
              f"x{row['ratio_vs_diffusion']:.3f} of diffusion eager, x{row['ratio_vs_diffusion_same_settings']:.3f} "
              "of diffusion in the same settings  "
              f"(update {row['update_s']:.3f} s, data wait {row['data_s']:.3f} s per step; first interval "
              f"+{row['first_interval_extra_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
