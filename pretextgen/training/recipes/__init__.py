"""Every task's recipe: heads and losses as the papers had them, on the shared trunks.

One file per family (``base`` says which holds what); each task names its class in its
``TrainerSpec``. Everything is also importable from here, as before the split. Inputs are
converted by ``training.inputs``, heads live in ``training.heads``, losses in ``training.losses``.
"""
from ..heads import MLP, MaeDecoder, UpDecoder
from ..inputs import RGB_MEAN, RGB_STD, lab_input, normalize_ab, normalize_L, normalize_rgb, standardize
from ..losses import classification, info_nce, soft_cross_entropy, weighted_mse
from .colour import Colorization, SplitBrain, SplitTrunk
from .contrastive import Contrastive, Exemplar
from .masked import Inpainting, Mae
from .predictive import CPC
from .spatial import Context, Jigsaw, Rotation
from .video import FrameOrder, Track, VideoColorization

__all__ = ["RGB_MEAN", "RGB_STD", "normalize_rgb", "normalize_L", "normalize_ab", "lab_input", "standardize",
           "classification", "soft_cross_entropy", "info_nce", "weighted_mse", "MLP", "UpDecoder", "MaeDecoder",
           "SplitTrunk", "Rotation", "Jigsaw", "Context", "Exemplar", "Contrastive", "Colorization", "SplitBrain",
           "Inpainting", "Mae", "CPC", "FrameOrder", "Track", "VideoColorization"]
