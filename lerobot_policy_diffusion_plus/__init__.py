"""Diffusion Policy (Chi et al. 2023) for LeRobot: `--policy.type=diffusion_plus` (U-Net) and
`--policy.type=diffusion_plus_transformer`. Importing the package registers both types."""

from .configuration_diffusion_plus import DiffusionPlusConfig, DiffusionPlusTransformerConfig

__all__ = ["DiffusionPlusConfig", "DiffusionPlusTransformerConfig"]
