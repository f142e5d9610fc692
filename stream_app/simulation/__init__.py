"""The simulator: a seeded world producing client events, readings and delayed ground truth."""
