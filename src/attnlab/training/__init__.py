"""Model-agnostic training: schedules, checkpoints, the Trainer loop."""
