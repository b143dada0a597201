"""Built-in tasks: one file each. Importing this package registers them (only NumPy is imported)."""
from . import context, jigsaw, rotation  # noqa: F401
from . import contrastive, exemplar, inpainting, mae  # noqa: F401
from . import colorization, splitbrain  # noqa: F401  (Lab tasks, issue 3)
from . import cpc  # noqa: F401
from . import frame_order, track, video_colorization  # noqa: F401  (video tasks, issue 4)
