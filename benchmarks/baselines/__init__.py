"""Plain PIL + NumPy implementations of each task's samples, written the way the original papers'
PyTorch loaders do it (open with PIL, convert, resize/crop with PIL, cut with NumPy). The benchmark
times them side by side with pretextgen's backends: ``make(path, rng, params) -> arrays``."""
