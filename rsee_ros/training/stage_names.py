"""The training stages, in the order they run (torch-free, for the command line's choices)."""

STAGES = ("warmup", "joint", "finetune", "gate")
