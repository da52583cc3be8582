"""Training: config (every option, once), factories, the loop, LR schedules, calibration, plots.

Knows nothing of MLflow: the recipe in tracking/ runs these stages and logs them."""
