"""Training on pretext samples, and the evaluation that says whether it taught the trunk anything.

torch is imported here only (building samples never needs it). What a task trains is declared in
its own file (``Task.trainer(params, config) -> Recipe``); this package holds what the tasks share:
trunks with named stage taps (``models``), the recipe interface (``recipe``), the training loop
(``trainer``), checkpoints (``checkpoint``) and the linear-probe / kNN evaluation (``evaluate``).

    import pretextgen
    pretextgen.train(task="rotation", data="out/rot", out="runs/rot", preset="cpu")
    pretextgen.evaluate("runs/rot/checkpoint.pt", data="labeled/")
"""
from __future__ import annotations


def train(*args, **kwargs) -> dict:
    """See :func:`pretextgen.train.trainer.train`."""
    from .trainer import train as _train

    return _train(*args, **kwargs)


def evaluate(*args, **kwargs) -> dict:
    """See :func:`pretextgen.train.evaluate.evaluate`."""
    from .evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
