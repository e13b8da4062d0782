"""Run lerobot-rollout's real entry point with a policy whose network outputs NaN.

Usage: python nan_policy_rollout.py <lerobot-rollout args>
The checkpoint loads as usual (its weights are finite, as loading requires); then the bias of the denoiser's
last layer is set to NaN, as a diverged or corrupted network would be, so every sampled chunk is NaN. The
rest (LeRobot's loop, its RTC thread, the robot) runs as in a real rollout.
"""

import sys

import torch

from lerobot_policy_diffusion_plus.modeling_diffusion_plus import DiffusionPlusPolicy


def main() -> None:
    load = DiffusionPlusPolicy.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        policy = load(cls, *args, **kwargs)
        last = [m for m in policy.inference_model.denoiser.modules() if getattr(m, "bias", None) is not None][-1]
        with torch.no_grad():
            last.bias.fill_(float("nan"))
        return policy

    DiffusionPlusPolicy.from_pretrained = classmethod(from_pretrained)

    from lerobot.scripts.lerobot_rollout import main as rollout_main

    sys.argv = ["lerobot-rollout", *sys.argv[1:]]
    rollout_main()


if __name__ == "__main__":
    main()
