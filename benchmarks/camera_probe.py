"""Is the image encoder the slow learner? The policy's own observation encoder, trained from scratch to regress
the action directly (no diffusion), on the data of camera_learning.py, with its held-out error every few steps.

    python benchmarks/camera_probe.py --workdir runs/camera_learning [--steps 1000] [--eval-every 100]
                                      [--batch-size 8] [--lr 5e-4 [3e-3 ...]] [--target action [chunk]]
                                      [--json benchmarks/results/camera_probe_cpu.json]

camera_learning.py asks whether the whole policy learns where the discs are in 28 CPU minutes. This asks the
narrower question of how many steps the encoder alone needs, taking the denoiser out of the way:
- Encoder: `ObservationEncoder` of diffusion_plus at the CPU camera recipe (one observation, 120x160 working
  size, random 0.9 crop in training, centre crop at inference, ResNet-18 with GroupNorm from scratch, spatial
  softmax), followed by one linear layer to the 6 joints; mean squared error on the normalised first action,
  AdamW, one fresh encoder per learning rate and target given. That is an easier problem than the policy's: a
  regression of one action instead of denoising a 16-action chunk. `--target chunk` regresses the whole chunk
  (the policy's target) instead, still scored on its first action.
- Data: the same training and held-out sets (made by camera_learning.py when absent). Frames are decoded once
  and resized to the working size up front (the encoder's own resize is then the identity), so a step is
  the encoder's compute only.
- Error: as camera_learning.py, in degrees on the held-out jump and drift frames, with "hold" and "mean"
  beside it, and "disc centroid": the pointing joints computed from the disc's pixels (what the images
  contain).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import camera_learning
from diffusion_plus_tools import so100_synthetic
from lerobot_policy_diffusion_plus.obs_encoder import resize
from lerobot_policy_diffusion_plus.so100_dryrun import BLOB_COLOURS

WORKING = (120, 160)
HORIZON = 16  # the policy's action chunk
CAMERAS = [f"observation.images.{c}" for c in so100_synthetic.CAMERAS]


def load(root: Path) -> dict[str, torch.Tensor]:
    """Every frame's state, action, chunk (its next HORIZON actions, the episode's last one repeated past its
    end, as LeRobot pads) and both cameras at the working size (uint8)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    frames = LeRobotDataset(repo_id="local/so100_synth", root=root).hf_dataset.with_format("torch")
    action, episode = torch.stack(list(frames["action"])), torch.as_tensor(frames["episode_index"])
    # Past its episode's end a window repeats the episode's last frame (episodes are stored in order).
    last = torch.searchsorted(episode, episode, right=True) - 1
    index = torch.minimum(torch.arange(len(action))[:, None] + torch.arange(HORIZON), last[:, None])
    out = {"observation.state": torch.stack(list(frames["observation.state"])), "action": action,
           "chunk": action[index]}
    images = {key: [] for key in CAMERAS}
    for i in range(len(frames)):
        row = frames[i]  # decodes the row's frames: (3, 480, 640) uint8 each
        for key in CAMERAS:
            im = resize(row[key][None].float() / 255, WORKING)[0]
            images[key].append((im * 255).round().clamp(0, 255).to(torch.uint8))
    return out | {key: torch.stack(images[key]) for key in CAMERAS}


def disc_centroid(data: dict[str, torch.Tensor]) -> np.ndarray:
    """The first action with the pointing joints computed from the discs' pixels (colour within 25 levels)."""
    h, w = WORKING
    pred = data["action"].numpy().copy()
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
    centres = []
    for key, colour in zip(CAMERAS, BLOB_COLOURS):
        mask = (data[key].float() - torch.tensor(colour, dtype=torch.float32)[:, None, None]).abs().amax(1) < 25
        n = mask.sum((1, 2)).clamp(min=1)
        # Centres in the 480x640 frame the data was drawn at: the pointing formula's coordinates.
        centres.append(torch.stack([(mask * rows).sum((1, 2)) / n * (so100_synthetic.HEIGHT / h),
                                    (mask * cols).sum((1, 2)) / n * (so100_synthetic.WIDTH / w)], -1).numpy())
    pan, flex = so100_synthetic.pointing(centres[0], centres[-1], so100_synthetic.HEIGHT, so100_synthetic.WIDTH)
    pred[:, so100_synthetic.PAN], pred[:, so100_synthetic.FLEX] = pan, flex
    return pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-4])
    parser.add_argument("--target", nargs="+", choices=["action", "chunk"], default=["action"],
                        help="regress the first action, or the whole 16-action chunk (scored on its first action)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy_config, make_pre_post_processors
    from lerobot.utils.feature_utils import dataset_to_policy_features

    from lerobot_policy_diffusion_plus.obs_encoder import ObservationEncoder

    args.workdir.mkdir(parents=True, exist_ok=True)
    train_root, test_root = camera_learning.make_data(args.workdir)
    t0 = time.time()
    train, test = load(train_root), load(test_root)
    print(f"decoded and resized {len(train['action']) + len(test['action'])} frames in {time.time() - t0:.0f} s")

    meta = LeRobotDatasetMetadata("local/so100_synth", root=train_root)
    features = dataset_to_policy_features(meta.features)
    config = make_policy_config(
        "diffusion_plus", device="cpu", n_obs_steps=1, resize_shape=list(WORKING),
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))})
    pre, post = make_pre_post_processors(config, dataset_stats=meta.stats)
    action, state = test["action"].numpy(), test["observation.state"].numpy()
    frames, jump = camera_learning.scored_frames(action, state)

    def score(pred: np.ndarray) -> dict:
        return camera_learning.errors(pred[frames], action[frames], jump)

    def train_and_score(lr: float, target: str) -> list[dict]:
        """A fresh encoder and head trained at `lr` on `target`; held-out errors every `eval_every` steps."""
        torch.manual_seed(0)
        steps = HORIZON if target == "chunk" else 1
        encoder = ObservationEncoder(config)
        head = torch.nn.Linear(encoder.feature_dim, steps * 6)
        optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=lr, weight_decay=1e-6)

        def predict(data: dict, index) -> tuple[torch.Tensor, torch.Tensor]:
            """Normalised target (the first action or the chunk) predicted from the observations at `index`,
            and the normalised target itself."""
            batch = {k: v[index] for k, v in data.items() if k != "action"}
            batch.update({k: batch[k].float() / 255 for k in CAMERAS})
            batch["action"] = batch.pop("chunk")[:, :steps]
            batch = pre(batch)
            obs = {k: batch[k][:, None] for k in encoder.input_keys}
            return head(encoder(obs)[:, 0]).view(-1, steps, 6), batch["action"]

        curve, n, start = [], len(train["action"]), time.time()
        for step in range(1, args.steps + 1):
            out, goal = predict(train, torch.randint(0, n, (args.batch_size,)))
            loss = F.mse_loss(out, goal)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % args.eval_every == 0:
                encoder.eval()
                with torch.no_grad():
                    pred = torch.cat([post(predict(test, torch.arange(s, min(s + 64, len(action))))[0][:, 0])
                                      for s in range(0, len(action), 64)])
                encoder.train()
                curve.append({"step": step, "train_s": round(time.time() - start), **score(pred.numpy())})
                print(f"lr {lr:g}, {target}", curve[-1], flush=True)
        return curve

    rows = [{"predictor": "hold (blind: the current position)", **score(state)},
            {"predictor": "mean (blind: the training mean)",
             **score(np.broadcast_to(train["action"].numpy().mean(0), action.shape))},
            {"predictor": "disc centroid (from the pixels)", **score(disc_centroid(test))}]
    for r in rows:
        print(r)
    runs = [{"lr": lr, "target": t, "curve": train_and_score(lr, t)} for t in args.target for lr in args.lr]
    if args.json:
        meta_row = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "jump_frames": int(jump.sum()), "drift_frames": int((~jump).sum())}
        if args.json.exists():  # runs of other (learning rate, target) pairs keep their curve, with its date
            old = json.loads(args.json.read_text())
            done = {(r["lr"], r["target"]) for r in runs}
            runs += [{**r, "date": r.get("date", old["date"])} for r in old["encoder_regression"]
                     if (r["lr"], r["target"]) not in done]
        args.json.write_text(json.dumps({**meta_row, "baselines": rows, "encoder_regression": runs}, indent=1))


if __name__ == "__main__":
    main()
