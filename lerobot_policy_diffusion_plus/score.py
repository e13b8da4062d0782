"""Score a checkpoint before it touches an arm: per-joint error of its actions on held-out episodes of a
LeRobotDataset, beside two blind predictors that never look at the cameras.

    diffusion-plus-score --checkpoint outputs/so100/checkpoints/last/pretrained_model \\
        --dataset.repo_id USER/so100 [--dataset.root DIR] [--held-out 5 | --episodes 45 46 47]
        [--every 1] [--moving 2.0] [--sampler DDIM-10] [--batch-size 16] [--json score.json]

For every scored frame of the held-out episodes (by default the last tenth, rounded up) the policy gets the
observation window it was trained on and predicts a chunk; its first action is compared with the recorded
action, in the dataset's units (degrees for an SO-100). Beside it:
- "hold": the current position (`observation.state`) as the action, when action and state have the same
  size: right while the arm is still, wrong whenever it must move;
- "state only": a least-squares linear map from the current state to the action, fitted on the other
  episodes: what can be guessed without the images.
Frames where some joint's recorded action is more than `--moving` units from its current position are also
scored apart ("moving"): there the next position is not the current one, so with a camera-driven task they
are where only the images tell. A policy that reads its cameras errs well below both blind predictors there.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from lerobot.utils.constants import ACTION, OBS_STATE


def held_out_episodes(total: int, held_out: int | None, episodes: list[int] | None) -> list[int]:
    if episodes:
        bad = [e for e in episodes if not 0 <= e < total]
        if bad:
            raise SystemExit(f"--episodes {bad}: the dataset has episodes 0..{total - 1}")
        return sorted(set(episodes))
    # By default the last tenth, rounded up: the episodes `lerobot-train --dataset.eval_split=0.1` holds out.
    n = held_out if held_out is not None else math.ceil(total / 10)
    if not 1 <= n < total:
        raise SystemExit(f"--held-out {n}: expected 1..{total - 1} (the other episodes fit the blind predictor)")
    return list(range(total - n, total))


def load_policy(checkpoint: Path, device: str, sampler: str | None):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    overrides = []
    if sampler:  # through the config's checks: a student refuses the diffusion samplers, and the other way round
        name, steps = sampler.rsplit("-", 1)
        overrides = [f"--noise_scheduler_type={name}", f"--num_inference_steps={steps}"]
    config = PreTrainedConfig.from_pretrained(checkpoint, cli_overrides=overrides)
    config.device = device
    policy = get_policy_class(config.type).from_pretrained(checkpoint, config=config).eval()
    pre, post = make_pre_post_processors(config, pretrained_path=str(checkpoint))
    return policy, pre, post


def columns(repo_id: str, root: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Whole columns of the dataset's table (no images decoded), one row per frame."""
    from lerobot.datasets import LeRobotDataset

    table = LeRobotDataset(repo_id, root=root).hf_dataset
    return {k: np.stack([np.asarray(v, dtype=np.float64) for v in table[k]]) for k in keys}


def observation_windows(repo_id: str, root: Path, fps: float, keys: list[str], n_obs: int,
                        episodes: list[int] | None = None):
    """The dataset with each of `keys` as the window of `n_obs` steps a policy is given (item: (n_obs, ...))."""
    from lerobot.datasets import LeRobotDataset

    deltas = {k: [i / fps for i in range(1 - n_obs, 1)] for k in keys}
    return LeRobotDataset(repo_id, root=root, episodes=episodes, delta_timestamps=deltas)


def predict(policy, pre, post, dataset, frames, batch_size: int):
    """(recorded actions, current states or None, predicted first actions) at the items `frames` of `dataset`
    (observation windows, see observation_windows), in batches of `batch_size`."""
    obs_keys = list(policy.config.input_features)
    torch.manual_seed(0)  # the same initial noise every time a checkpoint is scored
    truth, state, pred = [], [], []
    with torch.no_grad():
        for s in range(0, len(frames), batch_size):
            items = [dataset[int(i)] for i in frames[s : s + batch_size]]
            batch = pre({k: torch.stack([it[k] for it in items]) for k in obs_keys})
            policy.reset()
            chunk = policy.predict_action_chunk({k: v for k, v in batch.items() if k in obs_keys})
            pred.append(post(chunk[:, 0]).cpu().numpy())
            truth.append(np.stack([it[ACTION].numpy() for it in items]))
            if OBS_STATE in items[0]:
                state.append(np.stack([it[OBS_STATE][-1].numpy() for it in items]))
    return np.concatenate(truth), (np.concatenate(state) if state else None), np.concatenate(pred)


def fit_state_only(fit: dict[str, np.ndarray]):
    """Least squares action ~ [state, 1] on the fitting episodes."""
    x = np.concatenate([fit[OBS_STATE], np.ones((len(fit[OBS_STATE]), 1))], axis=1)
    w, *_ = np.linalg.lstsq(x, fit[ACTION], rcond=None)
    return lambda state: np.concatenate([state, np.ones((len(state), 1))], axis=1) @ w


def errors(pred: np.ndarray, truth: np.ndarray, moving: np.ndarray | None) -> dict[str, list[float]]:
    err = np.abs(pred - truth)
    row = {"all": err.mean(0).round(3).tolist()}
    if moving is not None and moving.any():
        row["moving"] = err[moving].mean(0).round(3).tolist()
    return row


def score(checkpoint: Path, repo_id: str, root: Path, held_out: int | None = None,
          episodes: list[int] | None = None, every: int = 1, moving: float = 2.0, sampler: str | None = None,
          batch_size: int = 16, device: str = "cpu") -> dict:
    """Per-joint mean absolute error of the policy and of the blind predictors, as a dict (see the module)."""
    from lerobot.datasets import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata(repo_id, root=root)
    test = held_out_episodes(meta.total_episodes, held_out, episodes)
    policy, pre, post = load_policy(checkpoint, device, sampler)
    dataset = observation_windows(repo_id, root, meta.fps, list(policy.config.input_features),
                                  policy.config.n_obs_steps, test)
    truth, state, pred = predict(policy, pre, post, dataset, range(0, len(dataset), every), batch_size)
    names = meta.features[ACTION].get("names") or [f"action_{i}" for i in range(truth.shape[1])]
    mask = None
    rows = {"policy": None}
    if state is not None:
        if state.shape[1] == truth.shape[1]:
            mask = (np.abs(truth - state) > moving).any(axis=1)
            rows["hold"] = errors(state, truth, mask)
        table = columns(repo_id, root, [OBS_STATE, ACTION, "episode_index"])
        fitting = ~np.isin(table["episode_index"], test)
        rows["state only"] = errors(fit_state_only({k: v[fitting] for k, v in table.items()})(state), truth, mask)
    rows["policy"] = errors(pred, truth, mask)
    return {"checkpoint": str(checkpoint), "dataset": str(root), "held_out_episodes": test,
            "frames": len(truth), "moving_frames": int(mask.sum()) if mask is not None else None,
            "joints": list(names), "errors": rows}


def print_report(result: dict) -> None:
    names = result["joints"]
    width = max(12, *(len(n) for n in names))
    print(f"held-out episodes {result['held_out_episodes']}: {result['frames']} frames, "
          f"{result['moving_frames']} moving; mean absolute error of the first action, dataset units")
    for subset in ("all", "moving"):
        rows = {k: v[subset] for k, v in result["errors"].items() if v and subset in v}
        if not rows:
            continue
        print(f"\n{subset} frames".ljust(width + 1) + "".join(f"{k:>14s}" for k in rows))
        for j, name in enumerate(names):
            print(f"{name:{width}s}" + "".join(f"{v[j]:14.3f}" for v in rows.values()))
        blind = [k for k in rows if k != "policy"]
        if blind:
            best = np.min([rows[k] for k in blind], axis=0)
            ratio = np.asarray(rows["policy"]) / np.maximum(best, 1e-9)
            print(f"{'policy / best blind':{width}s}" + "".join(f"{r:14.2f}" for r in ratio))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a pretrained_model folder")
    parser.add_argument("--dataset.repo_id", dest="repo_id", required=True)
    parser.add_argument("--dataset.root", dest="root", type=Path, default=None,
                        help="the dataset's folder (default: LeRobot's cache, $HF_LEROBOT_HOME/REPO_ID)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--held-out", type=int, default=None, help="score the last N episodes (default: a tenth)")
    group.add_argument("--episodes", type=int, nargs="+", default=None, help="score these episodes")
    parser.add_argument("--every", type=int, default=1, help="score every Nth frame")
    parser.add_argument("--moving", type=float, default=2.0,
                        help="a frame is 'moving' when an action is more than this from the current state")
    parser.add_argument("--sampler", default=None, help="e.g. DDIM-10, or consistency-1 for a distilled student "
                        "(default: the checkpoint's own)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if not (args.checkpoint / "config.json").exists():
        parser.error(f"--checkpoint {args.checkpoint}: no config.json (give a pretrained_model folder)")
    if args.root is None:
        from lerobot.utils.constants import HF_LEROBOT_HOME

        args.root = HF_LEROBOT_HOME / args.repo_id
    if not (args.root / "meta" / "info.json").exists():
        parser.error(f"--dataset.root {args.root}: not a LeRobotDataset (no meta/info.json)")
    if args.every < 1 or args.batch_size < 1:
        parser.error("--every and --batch-size must be >= 1")
    if args.sampler and not re.fullmatch(r"(DDPM|DDIM|DPM\+\+2M|consistency)-[1-9][0-9]*", args.sampler):
        parser.error("--sampler must be SAMPLER-STEPS with SAMPLER one of DDPM, DDIM, DPM++2M (a diffusion model) "
                     f"or consistency (a distilled student), got {args.sampler!r}")
    result = score(args.checkpoint, args.repo_id, args.root, args.held_out, args.episodes, args.every,
                   args.moving, args.sampler, args.batch_size, args.device)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
