"""`compile_model`: torch.compile of the two hot paths, with the compiled artefacts cached on disk.

Training compiles the loss of one batch (encoder, denoiser, forward process; backward follows through
AOTAutograd). Inference compiles one denoising step (the U-Net fast path, the eager U-Net or the
transformer decoder): a chunk calls it `num_inference_steps` times on tensors of fixed shapes, which is what
a compiler fuses best. Everything a step needs is passed in, so the compiled code is the same function of
the same weights as eager (tests/test_compile.py checks loss, gradients and actions against it).

The first call of each path compiles (tens of seconds on a CPU). Inductor's FX-graph and AOTAutograd caches
are then kept in `cache_dir()`, not in /tmp, so a robot's second start, even after a reboot, only re-traces.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import torch

logger = logging.getLogger(__name__)
_compiled: dict[tuple[Callable, str], Callable] = {}


def cache_dir() -> Path:
    """Our compile cache under the user's cache folder (used unless the user set $TORCHINDUCTOR_CACHE_DIR)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lerobot_policy_diffusion_plus" / "torch_compile"


def _use_disk_cache() -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # Torch writes its /tmp default into the environment on first use: only that value is ours to replace.
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or current == default_cache_dir():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir())
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True


def compiled(fn: Callable, mode: str) -> Callable:
    """`fn` compiled once per process and mode. Shapes are static: a policy's shapes never change."""
    key = (fn, mode)
    if key not in _compiled:
        _use_disk_cache()
        # The compiled code is specialised to one module and one set of shapes: leave room for the live
        # model next to its EMA copy, both denoisers and a few batch sizes before falling back to eager.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)
        _compiled[key] = torch.compile(fn, mode=mode, dynamic=False)
        # Said once per path: a robot loop otherwise shows a silent stall of up to a minute on its first chunk.
        logger.info("compiling %s (torch.compile mode=%s) on its first call; cache: %s",
                    getattr(fn, "__qualname__", fn), mode, os.environ["TORCHINDUCTOR_CACHE_DIR"])
    return _compiled[key]
