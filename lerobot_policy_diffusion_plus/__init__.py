"""Diffusion Policy (Chi et al. 2023) for LeRobot: `--policy.type=diffusion_plus` (U-Net) and
`--policy.type=diffusion_plus_transformer`. Importing the package registers both types, and the
hardware-free `--robot.type=so100_dryrun` for checking a checkpoint with lerobot-rollout."""

from .configuration_diffusion_plus import DiffusionPlusConfig, DiffusionPlusTransformerConfig

# LeRobot's robot factory looks for the robot class (config class name minus "Config") in this package.
from .so100_dryrun import SO100Dryrun, SO100DryrunConfig

__all__ = ["DiffusionPlusConfig", "DiffusionPlusTransformerConfig", "SO100Dryrun", "SO100DryrunConfig"]
