"""Testing: the target harness, virtual board, esp32-port model, HIL, fuzzing, security report."""
