"""Video decoding, optical flow and motion scoring, imported as ``pretextgen.video``.

- ``decode``: clips listed and probed, frames read with decord (CPU);
- ``flow``: OpenCV DIS / Farneback (CPU), DALI NVOF (GPU, ``dali.NvofFlow``);
- ``motion``: the per-clip motion index and tracks, cached on disk; ``track``: the tracker;
- ``plans``: the plan layout shared by the video tasks and the frame executor;
- ``build``: what ``pretextgen build`` does for video tasks; ``dali``: the NVDEC graph.
"""


def rederive(task, params, source_root, meta: dict) -> dict:
    """A stored sample's fields re-created from its JSON (``meta``) and the clips under ``source_root``
    (task: a name or a registry Task; params: the task's params, e.g. from the manifest)."""
    from .build import rederive as _rederive

    return _rederive(task, params, source_root, meta)
