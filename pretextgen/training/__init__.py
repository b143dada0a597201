"""Training on pretext samples, and the evaluation that says whether it taught the trunk anything.

torch is imported here only (building samples never needs it). What a task trains is declared in
its own file (``Task.trainer``, a ``registry.TrainerSpec``); this package holds what the tasks share:
trunks with named stage taps (``models``), the recipe interface (``recipe``), inputs (``inputs``),
heads (``heads``), losses (``losses``), memories of negatives (``memory``), every task's recipe
(``recipes``, a file per family), the training loop (``trainer``), checkpoints (``checkpoint``),
the linear-probe / kNN evaluation (``probe``), label propagation on DAVIS (``davis``), the
pretext on unseen clips (``clips_eval``) and ``pretextgen compare`` (``compare``). From Python::

    import pretextgen
    pretextgen.train(data="out/rot", out="runs/rot", preset="cpu")
    pretextgen.evaluate("runs/rot/checkpoint.pt", data="labeled/")
"""
