"""Training runs: schedules, callbacks, the run directory, evaluation and reports."""
