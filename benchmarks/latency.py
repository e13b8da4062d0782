"""Per-chunk latency through `select_action` after `reset()` (the lerobot-eval / lerobot-rollout path), batch 1,
for diffusion_plus, diffusion_plus_transformer and LeRobot's own `diffusion` at the same U-Net size, the same
PushT keypoint features, the same sampler and step count, interleaved in one process. Prints ratios.
Samplers LeRobot's diffusion lacks (DPM++2M) are compared with our own U-Net at DDIM-10 instead.

    python benchmarks/latency.py [--sizes small large] [--samplers DDIM-10 DDPM-100 DPM++2M-4] [--repeats 20]
                                 [--device cpu] [--threads N] [--json out.json]
                                 [--plot out.png [--plot-steps 1 2 4 10 25 50 100]]
    python benchmarks/latency.py --cameras [--sizes small] [--repeats 10]   # SO-100, two 640x480 cameras
    python benchmarks/latency.py --compile [--compile-mode default] [--sizes small large] [--repeats 10]
    python benchmarks/latency.py --cameras --compile [--sizes small]   # cameras, eager and compiled
    python benchmarks/latency.py --samplers DDIM-10 consistency-1 consistency-2   # distilled students
    python benchmarks/latency.py --cameras --student      # cameras, CPU robot recipe, the one-step student
    python benchmarks/latency.py --stages [--repeats 100]  # the camera trunk per stage, in each memory layout

A distilled student (`consistency-N`, distilled from DDIM-10) is the same network as its teacher: its rows are
compared with LeRobot's `diffusion` at DDIM-10, what the teacher would run.

--compile measures DDIM-10 chunks of ours and LeRobot's `diffusion`, each eager and compiled
(`compile_model=true`: our denoising step, LeRobot's U-Net), and the first chunk of each compiled policy twice:
from an empty compile cache (a first start) and in a new process that finds the cache the first one left
(a second start; Python's imports and building the policy come before it and are not counted).

--cameras measures an SO-100 policy (6 joints, two 480x640 cameras) instead: both at the same working
resolution (240x320, crop 216x288), U-Net, horizon 16, 2 observations and DDIM-10, then each at its own
defaults (LeRobot's without downloaded weights, which change nothing in the compute).

--stages times each stage of the inference ResNet-18 (GroupNorm; stem, layer1..4) on two crops at the CPU
robot recipe's size (108x144) and the default one (216x288), in channels-last and in the default layout, the two
alternating call by call: what the per-stage layout in obs_encoder.RgbEncoder rests on.

--plot draws median chunk latency against the number of DDIM denoising steps for each policy (small U-Net).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class, make_policy_config

import lerobot_policy_diffusion_plus  # noqa: F401  (registers the plugin types)

SIZES = {"small": [64, 128, 256], "large": [256, 512, 1024]}  # 4.5M and 63.5M in LeRobot's diffusion
FEATURES = {
    "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
    "observation.environment_state": PolicyFeature(FeatureType.ENV, (16,)),
}
ACTION = {"action": PolicyFeature(FeatureType.ACTION, (2,))}


def build(policy_type: str, size: str, sampler: str, steps: int, device: str, compile_mode: str | None = None):
    common = dict(device=device, input_features=dict(FEATURES), output_features=dict(ACTION),
                  n_obs_steps=2, horizon=16, n_action_steps=8,
                  noise_scheduler_type=sampler, num_inference_steps=steps)
    if sampler == "consistency":  # a student distilled from DDIM-10: the same network, fewer calls
        common["distilled_steps"] = 10
    if compile_mode is not None:
        common.update(compile_model=True, compile_mode=compile_mode)
    if policy_type == "diffusion_plus_transformer":
        config = make_policy_config(policy_type, **common)  # paper size (8 layers, 256-d)
    else:
        config = make_policy_config(policy_type, down_dims=tuple(SIZES[size]), **common)
    policy = get_policy_class(policy_type)(config).to(device).eval()
    return policy


SO100 = {
    "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
    "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 480, 640)),
    "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 480, 640)),
}


# The CPU robot recipe (examples/so100/train_cpu.json): one observation, a 120x160 working size, 16 actions.
CPU_RECIPE = dict(down_dims=tuple(SIZES["small"]), n_obs_steps=1, horizon=16, n_action_steps=16,
                  resize_shape=(120, 160), crop_ratio=0.9, crop_shape=None, use_group_norm=True,
                  use_separate_rgb_encoder_per_camera=False)


def build_camera_policy(policy_type: str, size: str | None, device: str, compile_mode: str | None = None,
                        student: bool = False):
    """SO-100 policy; size None: the type's own defaults, "recipe": CPU_RECIPE, else equal settings at that U-Net
    size. student: a one-step student distilled from DDIM-10 (our policy only)."""
    common = dict(device=device, input_features=dict(SO100),
                  output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
                  noise_scheduler_type="DDIM", num_inference_steps=10)
    if student:
        common.update(noise_scheduler_type="consistency", num_inference_steps=1, distilled_steps=10)
    if policy_type == "diffusion":
        common["pretrained_backbone_weights"] = None  # no download; the same network either way
    if size == "recipe":
        common.update(CPU_RECIPE)
    elif size is not None:
        common.update(down_dims=tuple(SIZES[size]), n_obs_steps=2, horizon=16, n_action_steps=8,
                      resize_shape=(240, 320), crop_ratio=0.9, crop_shape=None, use_group_norm=True,
                      use_separate_rgb_encoder_per_camera=False)
    if compile_mode is not None:
        common.update(compile_model=True, compile_mode=compile_mode)
    config = make_policy_config(policy_type, **common)
    return get_policy_class(policy_type)(config).to(device).eval()


def measure_cameras(sizes, repeats, device, compile_mode: str | None = None, student: bool = False):
    """Equal settings per size, then each at its own defaults; with `compile_mode`, both also compiled at
    equal settings (the ratio stays against LeRobot's eager `diffusion`). With `student`, only the CPU robot
    recipe, both at DDIM-10 and our one-step student."""
    rows = []
    for size in ["recipe"] if student else [*sizes, None]:
        entries = [("diffusion", None), ("diffusion_plus", None)]
        if compile_mode is not None and size is not None:
            entries += [("diffusion", compile_mode), ("diffusion_plus", compile_mode)]
        if student:
            entries.append(("diffusion_plus", "student"))
        policies = {e: build_camera_policy(e[0], size, device, None if e[1] == "student" else e[1], e[1] == "student")
                    for e in entries}
        obs = {k: torch.rand(1, *ft.shape, device=device) for k, ft in SO100.items()}
        times = {e: [] for e in entries}
        for e in entries:
            for _ in range(2):
                chunk_latency(policies[e], device, obs)
        for _ in range(repeats):
            for e in entries:
                times[e].append(chunk_latency(policies[e], device, obs))
        base = statistics.median(times[("diffusion", None)])
        label = ("CPU robot recipe" if size == "recipe" else f"equal settings, U-Net {size}" if size
                 else "each at its own defaults")
        for e in entries:
            med = statistics.median(times[e])
            net = policies[e].model if hasattr(policies[e], "model") else policies[e].diffusion  # not the EMA copy
            params = sum(p.numel() for p in net.parameters())
            mode = {None: "eager, DDIM-10", "student": "eager, consistency-1"}.get(e[1], f"compiled ({e[1]})")
            rows.append({"policy": e[0], "settings": label, "mode": mode, "params_M": round(params / 1e6, 2),
                         "median_ms": round(med * 1e3, 1), "ratio_vs_diffusion": round(med / base, 3)})
            print(f"{label:28s} {e[0]:15s} {mode:20s} {params / 1e6:6.1f}M {med * 1e3:9.1f} ms  "
                  f"x{med / base:.3f} of diffusion eager")
    return rows


def measure_stages(repeats: int, device: str) -> list[dict]:
    from lerobot_policy_diffusion_plus.obs_encoder import resnet_trunk

    trunk = resnet_trunk("resnet18", None, use_group_norm=True).to(device).eval().requires_grad_(False)
    stages = {"stem": trunk[:4], "layer1": trunk[4], "layer2": trunk[5], "layer3": trunk[6], "layer4": trunk[7]}
    layouts = {"default": torch.contiguous_format, "channels_last": torch.channels_last}
    rows = []
    for crop in [(108, 144), (216, 288)]:
        x = torch.rand(2, 3, *crop, device=device)
        with torch.inference_mode():
            for _ in range(10):  # the first calls of a process start threads and build oneDNN's kernels
                trunk(x)
            for name, stage in stages.items():
                inputs, times = {}, {k: [] for k in layouts}
                for layout, fmt in layouts.items():
                    for p in stage.parameters():
                        if p.dim() == 4:
                            p.data = p.data.contiguous(memory_format=fmt)
                    inputs[layout] = (x.contiguous(memory_format=fmt), [p.data for p in stage.parameters()])
                for i in range(repeats + 5):
                    for layout, (inp, weights) in inputs.items():
                        for p, w in zip(stage.parameters(), weights):
                            p.data = w
                        start = time.perf_counter()
                        stage(inp)
                        if device.startswith("cuda"):
                            torch.cuda.synchronize()
                        if i >= 5:
                            times[layout].append(time.perf_counter() - start)
                x = stage(x.contiguous())
                med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
                rows.append({"crop": list(crop), "stage": name, **{f"{k}_ms": round(v, 2) for k, v in med.items()}})
                print(f"two {crop[0]}x{crop[1]} crops  {name:7s} default {med['default']:6.2f} ms  "
                      f"channels-last {med['channels_last']:6.2f} ms")
    return rows


def chunk_latency(policy, device: str, obs: dict | None = None) -> float:
    obs = obs or {"observation.state": torch.randn(1, 2, device=device),
                  "observation.environment_state": torch.randn(1, 16, device=device)}
    policy.reset()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    policy.select_action(obs)  # an empty queue: this call samples a whole chunk
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_compiled(sizes, repeats, device, mode):
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp  # empty: the first chunk is a first start
            entries = [(t, m) for t in ("diffusion", "diffusion_plus") for m in (None, mode)]
            policies = {e: build(e[0], size, "DDIM", 10, device, e[1]) for e in entries}
            first = {e: chunk_latency(policies[e], device) for e in entries}
            second = {e: second_start(e[0], size, e[1], device) for e in entries if e[1] is not None}
            for e in entries:
                chunk_latency(policies[e], device)
            times = {e: [] for e in entries}
            for _ in range(repeats):
                for e in entries:
                    times[e].append(chunk_latency(policies[e], device))
        med = {e: statistics.median(times[e]) for e in entries}
        for e in entries:
            label = "eager" if e[1] is None else f"compiled ({e[1]})"
            row = {"policy": e[0], "size": size, "mode": label, "median_ms": round(med[e] * 1e3, 2),
                   "ratio_vs_diffusion_eager": round(med[e] / med[("diffusion", None)], 3),
                   "ratio_vs_diffusion_same_mode": round(med[e] / med[("diffusion", e[1])], 3)}
            if e[1] is not None:
                row.update(first_start_s=round(first[e], 1), second_start_s=round(second[e], 2))
            rows.append(row)
            starts = f"  first chunk {first[e]:.1f} s, in a second process {second[e]:.1f} s" if e[1] else ""
            print(f"{size:5s} {e[0]:15s} {label:20s} {med[e] * 1e3:8.2f} ms  x{row['ratio_vs_diffusion_eager']:.3f} of "
                  f"diffusion eager, x{row['ratio_vs_diffusion_same_mode']:.3f} of diffusion {label}{starts}")
    return rows


def second_start(policy_type: str, size: str, mode: str, device: str) -> float:
    """First-chunk seconds of the compiled policy in a new process (the compile cache set in the environment)."""
    cmd = [sys.executable, __file__, "--first-chunk", policy_type, "--sizes", size, "--compile-mode", mode,
           "--device", device, "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(sizes, samplers, repeats, device):
    """One interleaved group per (size, sampler). A sampler LeRobot's diffusion lacks is compared with our
    own U-Net at DDIM-10 in the same group instead (the few-step target is relative to it)."""
    rows = []
    for size in sizes:
        for spec in samplers:
            sampler, steps = spec.rsplit("-", 1)
            types = ["diffusion_plus"] + (["diffusion_plus_transformer"] if size == sizes[0] else [])
            entries = [(t, sampler, int(steps)) for t in types]
            if sampler in ("DDPM", "DDIM"):
                base = ("diffusion", sampler, int(steps))
            elif sampler == "consistency":  # a distilled student against LeRobot at its teacher's DDIM-10
                base = ("diffusion", "DDIM", 10)
            else:
                base = ("diffusion_plus", "DDIM", 10)
            entries.insert(0, base)
            policies = {e: build(e[0], size, e[1], e[2], device) for e in entries}
            times = {e: [] for e in entries}
            for e in entries:  # warm-up (lazy tables, allocator)
                for _ in range(2):
                    chunk_latency(policies[e], device)
            for _ in range(repeats):  # interleaved so drift affects all alike
                for e in entries:
                    times[e].append(chunk_latency(policies[e], device))
            base_med = statistics.median(times[base])
            for e in entries:
                med = statistics.median(times[e])
                policy = policies[e]
                params = sum(p.numel() for p in (policy.model if hasattr(policy, "model") else policy.diffusion).parameters())
                label = f"{e[1]}-{e[2]}"
                rows.append({"policy": e[0], "size": size, "params_M": round(params / 1e6, 2), "sampler": label,
                             "median_ms": round(med * 1e3, 2), "baseline": f"{base[0]} {base[1]}-{base[2]}",
                             "ratio_vs_baseline": round(med / base_med, 3)})
                print(f"{size:5s} {label:11s} {e[0]:27s} {params / 1e6:6.1f}M {med * 1e3:8.2f} ms  "
                      f"x{med / base_med:.3f} of {base[0]} {base[1]}-{base[2]}")
    return rows


def plot(path: str, steps: list[int], repeats: int, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = measure(["small"], [f"DDIM-{n}" for n in steps], repeats, device)
    plt.figure(figsize=(6, 4))
    for t in ("diffusion", "diffusion_plus", "diffusion_plus_transformer"):
        pts = [(int(r["sampler"].split("-")[1]), r["median_ms"]) for r in rows if r["policy"] == t
               and r["sampler"].startswith("DDIM")]
        plt.plot(*zip(*pts), marker="o", label=t)
    plt.xscale("log")
    plt.yscale("log")
    plt.xlabel("DDIM denoising steps")
    plt.ylabel("median ms per chunk (batch 1)")
    plt.title(f"chunk latency, {device}, torch {torch.__version__}")
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "large"], choices=list(SIZES))
    parser.add_argument("--samplers", nargs="+", default=["DDIM-10", "DDPM-100", "DPM++2M-4"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--plot", default=None, help="also write a PNG of latency against DDIM steps")
    parser.add_argument("--plot-steps", type=int, nargs="+", default=[1, 2, 4, 10, 25, 50, 100])
    parser.add_argument("--cameras", action="store_true", help="SO-100 with two 640x480 cameras (see above)")
    parser.add_argument("--compile", action="store_true", help="eager against compiled, DDIM-10 (see above)")
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--student", action="store_true", help="with --cameras: the CPU robot recipe, DDIM-10 "
                        "against our one-step student (distilled from DDIM-10)")
    parser.add_argument("--stages", action="store_true", help="the camera trunk per stage and layout (see above)")
    parser.add_argument("--first-chunk", default=None, help=argparse.SUPPRESS)  # second_start's child process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.first_chunk:
        print(chunk_latency(build(args.first_chunk, args.sizes[0], "DDIM", 10, args.device, args.compile_mode), args.device))
        return
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    if args.stages:
        rows = measure_stages(args.repeats, args.device)
    elif args.cameras:
        rows = measure_cameras(args.sizes, args.repeats, args.device, args.compile_mode if args.compile else None,
                               args.student)
    elif args.compile:
        rows = measure_compiled(args.sizes, args.repeats, args.device, args.compile_mode)
    else:
        rows = measure(args.sizes, args.samplers, args.repeats, args.device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": args.device, "rows": rows}, f, indent=1)
    if args.plot:
        plot(args.plot, args.plot_steps, max(3, args.repeats // 4), args.device)


if __name__ == "__main__":
    main()
