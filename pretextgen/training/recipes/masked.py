"""The masked recipes: reconstruct hidden pixels. The context encoder (inpainting) and the masked
autoencoder (mae)."""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ..heads import MaeDecoder, UpDecoder
from ..inputs import RGB_MEAN, RGB_STD, normalize_rgb
from ..losses import weighted_mse
from ..models import make_trunk
from .base import _RGB, extra, make_recipe_trunk, output_map


class Inpainting(_RGB):
    """Context encoder (Pathak et al. 2016) without the adversarial term: the trunk encodes the masked
    crop, a light decoder (``UpDecoder``) predicts the target in normalised RGB, loss a weighted L2.
    ``center``: over the size/2 target square, its visible ``overlap`` border weighted
    ``overlap_weight`` (10, as the paper's code) and the hole 1; ``blocks`` / ``regions``: over the
    hidden pixels of the whole crop. Extra: ``decoder_width`` (64), ``overlap_weight`` (10).
    Evaluation: the trunk on whole (unmasked) normalised RGB images; ``eval_size`` = ``size``."""

    accuracy = "none measured: the loss is a weighted L2 regression of the target's pixels"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.size)
        c, side = output_map(self.trunk, 3, params.size)
        self.center = params.mask == "center"
        t = params.size // 2 if self.center else params.size
        self.decoder = UpDecoder(c, 3, side, t, int(extra(config, "decoder_width", 64)))
        w = torch.ones(1, 1, t, t)
        if self.center:
            o = params.overlap
            w.fill_(float(extra(config, "overlap_weight", 10.0)))
            w[..., o : t - o, o : t - o] = 1.0
        self.register_buffer("target_weight", w, persistent=False)

    def loss(self, batch):
        pred = self.decoder(next(reversed(self.trunk.features(normalize_rgb(batch["image"])).values())))
        weight = self.target_weight if self.center else batch["mask"].unsqueeze(1)
        return weighted_mse(pred, normalize_rgb(batch["target"]), weight), {}

    @property
    def eval_size(self):
        return self.params.size


class Mae(_RGB):
    """Masked autoencoder (He et al. 2022): the ``vit_tiny`` encoder sees only the visible patches
    (``visible`` in ``ids_keep`` order, per-channel normalised, at their positions), ``MaeDecoder``
    reconstructs every patch; loss the per-patch MSE averaged over the masked patches only, against
    ``target`` normalised like the input (or the stored per-patch-normalised target with
    ``norm_pix``). Extra: ``decoder_width`` (128), ``decoder_depth`` (2), ``decoder_heads`` (4).
    Evaluation: the encoder on all patches of a normalised RGB image, tokens after blocks 4/8/12 as
    maps; ``eval_size`` = ``size``."""

    accuracy = "none measured: the loss is the MSE of the masked patches' pixels"

    def __init__(self, params, config):
        super().__init__(params, config)
        if config.trunk != "vit_tiny":
            raise ConfigError(f"mae trains a ViT encoder: trunk must be vit_tiny, not {config.trunk!r}")
        self.trunk = make_trunk("vit_tiny", 3, image_size=params.size, patch=params.patch)
        self.decoder = MaeDecoder(self.trunk.out_channels, params.size // params.patch, params.patch ** 2 * 3,
                                  int(extra(config, "decoder_width", 128)), int(extra(config, "decoder_depth", 2)),
                                  int(extra(config, "decoder_heads", 4)))

    def _patches(self, x):
        """uint8 (B, n, p*p*3) -> per-channel normalised, same layout; float targets pass as stored."""
        if x.is_floating_point():
            return x.float()
        b, n, d = x.shape
        mean = torch.tensor(RGB_MEAN, device=x.device)
        std = torch.tensor(RGB_STD, device=x.device)
        return ((x.view(b, n, d // 3, 3).float() / 255.0 - mean) / std).view(b, n, d)

    def loss(self, batch):
        tokens = self.trunk.encode(self._patches(batch["visible"]), batch["ids_keep"])
        pred = self.decoder(tokens, batch["ids_restore"])
        per_patch = ((pred.float() - self._patches(batch["target"])) ** 2).mean(-1)
        mask = batch["mask"].float()
        return (per_patch * mask).sum() / mask.sum().clamp(min=1.0), {}

    @property
    def eval_size(self):
        return self.params.size
