"""How every recipe hands images to its trunk (and ``eval_input`` converts labeled images).

- RGB uint8 -> ``(x / 255 - mean) / std`` per channel with ImageNet's statistics
  (``RGB_MEAN`` = 0.485, 0.456, 0.406; ``RGB_STD`` = 0.229, 0.224, 0.225);
- Lab L in [0, 100] -> ``L / 50 - 1``; ab -> ``ab / 110`` (``lab_input``);
- a tile or patch standardised by its own mean and spread (``standardize``).
"""
from __future__ import annotations

import numpy as np
import torch

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


def normalize_rgb(x: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (..., 3, H, W) -> float, per-channel ImageNet mean/std."""
    mean = torch.tensor(RGB_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(RGB_STD, device=x.device).view(3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def normalize_L(L: torch.Tensor) -> torch.Tensor:
    return L.float() / 50.0 - 1.0


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    return ab.float() / 110.0


def lab_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> (B, 3, H, W) float: L / 50 - 1, a / 110, b / 110, through
    ``pretextgen.lab.srgb_to_lab`` (the conversion the builds use)."""
    from ..lab import srgb_to_lab

    lab = srgb_to_lab(images.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8))
    lab = torch.from_numpy(lab).permute(0, 3, 1, 2).to(images.device)
    return torch.cat([normalize_L(lab[:, :1]), normalize_ab(lab[:, 1:])], dim=1)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Each image (..., C, H, W) minus its mean over pixels and channels, over max(std, 1) in grey
    levels: what jigsaw's ``tile_norm`` stores."""
    x = x.float()
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    std = x.std(dim=(-3, -2, -1), keepdim=True, correction=0)
    return (x - mean) / std.clamp(min=1.0)
