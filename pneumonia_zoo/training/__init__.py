"""Training: the loop, LR schedules, sweeps, evaluation metrics and plots."""
