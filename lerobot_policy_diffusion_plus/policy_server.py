"""LeRobot's async inference policy server, able to serve `diffusion_plus` and `diffusion_plus_transformer`.

    python -m lerobot_policy_diffusion_plus.policy_server --host=0.0.0.0 --port=8080 --fps=30

takes the flags of `python -m lerobot.async_inference.policy_server` and runs LeRobot's own server, to which
LeRobot's `robot_client` connects unchanged. LeRobot's server cannot load this plugin by itself: it imports
no plugins and accepts only the policy types in its `SUPPORTED_POLICIES` list. This module imports the
package (registering its policy types and `--robot.type=so100_dryrun`), adds those types to that list,
and serves with a subclass that adapts the loaded policy to how the server uses it:

- the server asks for one chunk per observation, giving the policy a single observation each time, so a
  policy trained with `n_obs_steps > 1` would see a history of observations a chunk apart instead of one
  control step apart; such a checkpoint is refused when the client asks for it;
- the policy returns `n_action_steps` actions per chunk: the client's `--actions_per_chunk` sets it, up to
  the most the checkpoint allows (`horizon - n_obs_steps + 1`);
- the server resizes every camera frame to the size the policy was trained on before the policy sees it, so
  the policy's own check of the camera size never fires there: a client whose camera is missing or of
  another size is refused when it connects.
"""

from __future__ import annotations

try:
    import grpc
except ModuleNotFoundError as e:  # LeRobot's server needs its `async` extra
    raise SystemExit(f"{e}: install LeRobot's async inference extra: pip install 'lerobot[async]'") from e
from lerobot.async_inference import policy_server as lerobot_server
from lerobot.async_inference.constants import SUPPORTED_POLICIES

from .configuration_diffusion_plus import DiffusionPlusBaseConfig
from .registry import policy_types

POLICY_TYPES = policy_types()
# In place: LeRobot's server module holds this same list object.
SUPPORTED_POLICIES.extend(t for t in POLICY_TYPES if t not in SUPPORTED_POLICIES)


class DiffusionPlusPolicyServer(lerobot_server.PolicyServer):
    def SendPolicyInstructions(self, request, context):  # noqa: N802 (gRPC method name)
        reply = super().SendPolicyInstructions(request, context)
        config = getattr(self.policy, "config", None)
        if not isinstance(config, DiffusionPlusBaseConfig):
            return reply  # another policy type, or instructions the server ignored
        if config.n_obs_steps > 1:
            self._refuse(context, (
                f"{self.policy_type} checkpoint has n_obs_steps={config.n_obs_steps}: async inference gives "
                "the policy one observation per action chunk, not consecutive observations; train with "
                "--policy.n_obs_steps=1 for async inference"
            ))
        for key, feature in config.image_features.items():
            trained = "x".join(map(str, feature.shape[1:]))  # (C, H, W)
            sent = self.lerobot_features.get(key)  # the client robot's features; a camera's is (H, W, C)
            if sent is None:
                self._refuse(context, f"the client has no camera {key}; the policy was trained on its "
                                      f"{trained} (HxW) frames")
            elif tuple(sent["shape"][:2]) != tuple(feature.shape[1:]):
                size = "x".join(map(str, sent["shape"][:2]))
                self._refuse(context, (
                    f"camera {key} sends {size} (HxW) frames but the policy was trained on {trained}; the "
                    "server would stretch them to that size: configure the camera at its recorded size"
                ))
        most = config.horizon - config.n_obs_steps + 1
        config.n_action_steps = min(self.actions_per_chunk, most)
        if self.actions_per_chunk > most:
            self.logger.warning(
                f"actions_per_chunk={self.actions_per_chunk} is more than this checkpoint predicts; "
                f"sending {most} actions per chunk (horizon - n_obs_steps + 1)"
            )
        self.policy.reset()
        return reply

    def _refuse(self, context, message: str) -> None:
        """Unload the policy and end the client's call with `message` (the client stops with it)."""
        self.logger.error(message)
        self.policy = self.preprocessor = self.postprocessor = None
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, message)


def main() -> None:
    lerobot_server.PolicyServer = DiffusionPlusPolicyServer  # what LeRobot's serve() instantiates
    lerobot_server.serve()


if __name__ == "__main__":
    main()
