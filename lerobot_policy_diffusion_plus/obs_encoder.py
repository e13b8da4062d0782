"""Observation encoder: low-dim state, environment state and any number of cameras -> one feature per step.

Cameras go through a ResNet trunk (torchvision's architecture, no downloaded weights unless asked) with
BatchNorm replaced by GroupNorm, since batch statistics and an EMA of the weights do not mix, then a
spatial softmax that turns each feature map into expected 2D keypoint positions. Images are randomly
cropped per sample in training and centre-cropped in eval, as the paper.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn

from lerobot.configs import FeatureType
from lerobot.utils.constants import OBS_STATE


class SpatialSoftmax(nn.Module):
    """(N, C, H, W) feature maps -> (N, K, 2) expected (x, y) in [-1, 1] of K learned keypoint maps."""

    def __init__(self, channels: int, height: int, width: int, num_keypoints: int):
        super().__init__()
        self.to_keypoints = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
        )
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], dim=1), persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        maps = self.to_keypoints(features).flatten(2)  # (N, K, H*W)
        return torch.softmax(maps, dim=-1) @ self.grid


def crop(images: Tensor, size: tuple[int, int], random: bool) -> Tensor:
    """Crop (N, C, H, W) to `size`: an independent random window per image, or the centre."""
    N, _, H, W = images.shape
    h, w = size
    if (h, w) == (H, W):
        return images
    if not random:
        top, left = (H - h) // 2, (W - w) // 2
        return images[:, :, top : top + h, left : left + w]
    top = torch.randint(0, H - h + 1, (N, 1), device=images.device)
    left = torch.randint(0, W - w + 1, (N, 1), device=images.device)
    rows = (top + torch.arange(h, device=images.device))[:, :, None]  # (N, h, 1)
    cols = (left + torch.arange(w, device=images.device))[:, None, :]  # (N, 1, w)
    n = torch.arange(N, device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[n, rows, cols].permute(0, 3, 1, 2)


def resnet_trunk(name: str, weights: str | None, use_group_norm: bool) -> nn.Module:
    net = getattr(torchvision.models, name)(weights=weights)
    if use_group_norm:
        _replace_batchnorm(net)
    return nn.Sequential(*list(net.children())[:-2])  # drop global pooling and the classifier


def _replace_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(child.num_features // 16, child.num_features))
        else:
            _replace_batchnorm(child)


class RgbEncoder(nn.Module):
    """(N, C, H, W) normalised images -> (N, 2 * num_keypoints) features."""

    def __init__(self, config, image_shape: tuple[int, int, int]):
        super().__init__()
        self.crop_shape = tuple(config.crop_shape) if config.crop_shape else tuple(image_shape[1:])
        self.crop_is_random = config.crop_is_random
        self.backbone = resnet_trunk(
            config.vision_backbone, config.pretrained_backbone_weights, config.use_group_norm
        )
        with torch.no_grad():
            fmap = self.backbone(torch.zeros(1, image_shape[0], *self.crop_shape))
        k = config.spatial_softmax_num_keypoints
        self.pool = SpatialSoftmax(fmap.shape[1], fmap.shape[2], fmap.shape[3], k)
        self.out = nn.Sequential(nn.Linear(2 * k, 2 * k), nn.ReLU())
        self.feature_dim = 2 * k

    def forward(self, images: Tensor) -> Tensor:
        images = crop(images, self.crop_shape, random=self.training and self.crop_is_random)
        return self.out(self.pool(self.backbone(images)).flatten(1))


class ObservationEncoder(nn.Module):
    """Batch of observations with a time axis -> (B, n_obs, feature_dim)."""

    def __init__(self, config):
        super().__init__()
        features = config.input_features or {}
        # Every low-dim input, in a fixed order: robot state, other state vectors, environment state.
        states = sorted(k for k, ft in features.items() if ft.type is FeatureType.STATE)
        self.vector_keys = sorted(states, key=lambda k: k != OBS_STATE)
        self.vector_keys += sorted(k for k, ft in features.items() if ft.type is FeatureType.ENV)
        self.image_keys = sorted(config.image_features)
        dim = sum(features[k].shape[0] for k in self.vector_keys)
        self.separate = config.use_separate_rgb_encoder_per_camera
        if self.image_keys:
            shape = tuple(config.image_features[self.image_keys[0]].shape)
            n_enc = len(self.image_keys) if self.separate else 1
            self.rgb = nn.ModuleList(RgbEncoder(config, shape) for _ in range(n_enc))
            dim += len(self.image_keys) * self.rgb[0].feature_dim
        self.feature_dim = dim

    @property
    def input_keys(self) -> list[str]:
        return self.vector_keys + self.image_keys

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        parts = [batch[k] for k in self.vector_keys]
        if self.image_keys:
            B, T = batch[self.image_keys[0]].shape[:2]
            if self.separate:
                feats = [enc(batch[k].flatten(0, 1)) for enc, k in zip(self.rgb, self.image_keys)]
            else:
                # One shared trunk: run every camera in one batch, then split back per camera.
                stacked = torch.cat([batch[k].flatten(0, 1) for k in self.image_keys])
                feats = self.rgb[0](stacked).chunk(len(self.image_keys))
            parts += [f.view(B, T, -1) for f in feats]
        return torch.cat(parts, dim=-1)
