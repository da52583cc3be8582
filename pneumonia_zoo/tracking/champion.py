"""The champion rule, fixed before any test figure was looked at (pure: the CLI reads it for its help).

The champion is the version with the lowest validation Brier score of its calibrated model: a proper
score, which rewards probabilities that are sharp and honest alike, where validation AUC is saturated
(0.99+ for every version of the zoo: ranking by it chooses by noise). Only versions validated on the
same images are ranked against each other (Store.ranking): the champion's split, or the one split all share.
"""

CHAMPION_METRIC = "val_brier"
LOWER_IS_BETTER = ("_brier", "_loss", "_ece", "_log_loss")


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)
