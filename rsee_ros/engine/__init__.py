"""Inference engines: the model exported and fused so that a step's cost follows its FLOPs."""
