"""pretextgen: labeled samples for self-supervised pretext tasks, from photos and videos.

    import pretextgen
    manifest = pretextgen.build(task="jigsaw", out="out/jigsaw")   # scikit-image's photos by default
    pretextgen.list_tasks()
    pretextgen.train(data="out/jigsaw", out="runs/jigsaw")               # torch needed from here on
    pretextgen.evaluate("runs/jigsaw/checkpoint.pt", data="labeled/")
"""
from .version import __version__


def build(task: str, out, **kwargs) -> dict:
    """Build shards of ``task`` under ``out``; see :func:`pretextgen.builder.build` for options."""
    from .builder import build as _build

    return _build(task, out, **kwargs)


def list_tasks(pattern: str = "*") -> list:
    from .registry import list_tasks as _list

    return _list(pattern)


def get_task(name: str):
    from .registry import get_task as _get

    return _get(name)


def train(*args, **kwargs) -> dict:
    """Train a task's bundled recipe; see :func:`pretextgen.training.trainer.train` (imports torch)."""
    from .training.trainer import train as _train

    return _train(*args, **kwargs)


def evaluate(*args, **kwargs) -> dict:
    """Linear probe and kNN of a trained trunk; see :func:`pretextgen.training.probe.evaluate` (imports torch)."""
    from .training.probe import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["__version__", "build", "list_tasks", "get_task", "train", "evaluate"]
