"""Observation encoder: low-dim state, environment state and any number of cameras -> one feature per step.

Every camera is resized to one working size (`config.image_working_shape`), cropped (randomly per sample in
training, centred at inference, as the paper), and goes through a ResNet trunk and a spatial softmax that
turns each feature map into expected 2D keypoint positions. Trained from scratch the trunk uses GroupNorm,
since batch statistics and an EMA of the weights do not mix; started from pretrained weights it keeps their
BatchNorm layers with frozen statistics instead (as LeRobot's `act`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from lerobot.configs import FeatureType
from lerobot.utils.constants import OBS_STATE

from .errors import ConfigError

# True while a checkpoint is being loaded: the backbone is then built without its pretrained weights, which
# the checkpoint's own weights replace (so loading never downloads or reads the original file).
_FROM_CHECKPOINT = contextvars.ContextVar("diffusion_plus_from_checkpoint", default=False)


@contextlib.contextmanager
def building_from_checkpoint():
    token = _FROM_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _FROM_CHECKPOINT.reset(token)


def is_building_from_checkpoint() -> bool:
    return _FROM_CHECKPOINT.get()


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
    """Crop (N, C, H, W) to `size`: an independent random window per image, or the centre.

    The centre is torchvision's `center_crop` (offsets rounded half to even), what the paper evaluated with."""
    N, _, H, W = images.shape
    h, w = size
    if (h, w) == (H, W):
        return images
    if not random:
        top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
        return images[:, :, top : top + h, left : left + w]
    top = torch.randint(0, H - h + 1, (N, 1), device=images.device)
    left = torch.randint(0, W - w + 1, (N, 1), device=images.device)
    rows = (top + torch.arange(h, device=images.device))[:, :, None]  # (N, h, 1)
    cols = (left + torch.arange(w, device=images.device))[:, None, :]  # (N, 1, w)
    n = torch.arange(N, device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[n, rows, cols].permute(0, 3, 1, 2)


def resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, C, H, W) -> (N, C, *size), bilinear with antialiasing (torchvision's Resize on tensors)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def resnet_trunk(name: str, weights: str | None, use_group_norm: bool) -> nn.Module:
    """The ResNet without global pooling and classifier; pretrained weights (frozen BatchNorm) when named."""
    if weights:
        net = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d)
        if not _FROM_CHECKPOINT.get():
            trunk_keys = {k for k in net.state_dict() if not k.startswith("fc.")}
            net.load_state_dict(_pretrained_state(name, weights, trunk_keys), strict=False)
    else:
        net = getattr(torchvision.models, name)(weights=None)
        if use_group_norm:
            _replace_batchnorm(net)
    return nn.Sequential(*list(net.children())[:-2])


def _pretrained_state(name: str, weights: str, trunk_keys: set[str]) -> dict[str, Tensor]:
    """The trunk's state dict from a local file or a torchvision weights name; every trunk key must be there."""
    path = Path(weights).expanduser()
    if path.suffix in (".pth", ".pt", ".safetensors") or path.exists():
        if not path.is_file():
            raise ConfigError("pretrained_backbone_weights", weights, "an existing weights file")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        try:
            enum = torchvision.models.get_weight(weights)
        except (ValueError, AttributeError, KeyError) as e:
            raise ConfigError(
                "pretrained_backbone_weights", weights,
                "a torchvision weights name such as 'ResNet18_Weights.IMAGENET1K_V1' or a .pth/.safetensors file",
            ) from e
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
        if not cached.exists() and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise ConfigError(
                "pretrained_backbone_weights", weights,
                f"weights available offline: {cached} is missing and HF_HUB_OFFLINE is set. Download them on a "
                "machine with internet (or pass a local .pth file path)",
            )
        state = enum.get_state_dict(progress=False)
    missing = sorted(trunk_keys - set(state))
    if missing:
        raise ConfigError(
            "pretrained_backbone_weights", weights, f"a {name} state dict (missing {missing[:5]}...)"
        )
    return state


def _replace_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(child.num_features // 16, child.num_features))
        else:
            _replace_batchnorm(child)


# The trunk's children are conv1, norm, relu, max pool, layer1..4: inference runs layer3 and layer4 (children
# 6 and 7) in the default layout, the rest channels-last.
LATE_STAGES = 6


class RgbEncoder(nn.Module):
    """(N, C, H, W) normalised images of any size -> (N, 2 * num_keypoints) features."""

    def __init__(self, config, channels: int):
        super().__init__()
        self.working_shape = tuple(config.image_working_shape)
        self.crop_shape = tuple(config.image_crop_shape)
        self.crop_is_random = config.crop_is_random
        self.backbone = resnet_trunk(
            config.vision_backbone, config.pretrained_backbone_weights, config.use_group_norm
        )
        # Inference lays out each stage's convolutions for speed (see forward): remember which and how.
        assert len(self.backbone) == 8, "a torchvision ResNet trunk: conv1, norm, relu, max pool, layer1..4"
        self._conv_layouts = [
            (conv, torch.channels_last if i < LATE_STAGES else torch.contiguous_format)
            for i, child in enumerate(self.backbone) for conv in child.modules() if isinstance(conv, nn.Conv2d)
        ]
        with torch.no_grad():
            fmap = self.backbone(torch.zeros(1, channels, *self.crop_shape))
        k = config.spatial_softmax_num_keypoints
        self.pool = SpatialSoftmax(fmap.shape[1], fmap.shape[2], fmap.shape[3], k)
        self.out = nn.Sequential(nn.Linear(2 * k, 2 * k), nn.ReLU())
        self.feature_dim = 2 * k

    def forward(self, images: Tensor) -> Tensor:
        images = crop(resize(images, self.working_shape), self.crop_shape, self.training and self.crop_is_random)
        if self.training or torch.is_grad_enabled() or not self._frozen_layout():
            return self.out(self.pool(self.backbone(images)).flatten(1))
        # oneDNN runs the stem and the first two stages faster channels-last on a CPU, the last two (small maps,
        # many channels) faster in the default layout: the trunk on two 108x144 crops took 15.8 ms so, 19.1
        # all channels-last, 17.6 all default (ResNet-18, 2 threads; BENCHMARKS "SO-100 camera latency").
        maps = images.contiguous(memory_format=torch.channels_last)
        for i, stage in enumerate(self.backbone):
            maps = stage(maps.contiguous() if i == LATE_STAGES else maps)
        return self.out(self.pool(maps).flatten(1))

    def _frozen_layout(self) -> bool:
        """Store a frozen trunk's convolution weights in the layout its stage runs in (the EMA copy: nothing
        trains it): channels-last before `LATE_STAGES`, the default after; False if the trunk trains.

        The layout changes in place, so inference always reads the module's own weights: copies would go stale
        after a write through `.data`, which leaves no trace in a tensor's version. Checked per call (metadata
        only), since a load or `p.data = ...` may bring back the default layout. LeRobot's `save_pretrained`
        saves contiguous copies (safetensors' save_model), so checkpoints do not change. A trunk that trains
        keeps the layout its optimizer state and DDP's gradient buckets were made for (training measured no
        steady gain from channels-last) and runs inference in it: a layout that differs between a convolution's
        input and its weights makes every call convert the weights, slower than either layout."""
        convs = [(conv.weight, fmt) for conv, fmt in self._conv_layouts]  # read per call: a load may replace them
        if any(p.requires_grad for p, _ in convs):
            return False
        for p, fmt in convs:
            if not p.is_contiguous(memory_format=fmt):
                # Not an inference tensor even under torch.inference_mode (LeRobot's rollout and eval), which
                # training could not use afterwards.
                with torch.inference_mode(False):
                    p.data = p.data.contiguous(memory_format=fmt)
        return True


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
            channels = config.image_features[self.image_keys[0]].shape[0]
            n_enc = len(self.image_keys) if self.separate else 1
            self.rgb = nn.ModuleList(RgbEncoder(config, channels) for _ in range(n_enc))
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
                # One shared trunk: every camera at the working size in one batch, then split back per camera.
                size = self.rgb[0].working_shape
                stacked = torch.cat([resize(batch[k].flatten(0, 1), size) for k in self.image_keys])
                feats = self.rgb[0](stacked).chunk(len(self.image_keys))
            parts += [f.view(B, T, -1) for f in feats]
        return torch.cat(parts, dim=-1)

    def encode_frame(self, obs: dict[str, Tensor]) -> Tensor:
        """Features (B, feature_dim) of one time step (B, ...): what `forward` gives for that step."""
        return self.forward({k: obs[k].unsqueeze(1) for k in self.input_keys})[:, 0]
