"""The unlearning engine: the model, sliced training, checkpoints, increments, strategies and the Engine.

Start at `engine.Engine`: `Engine.train` builds a store, `Engine.open` loads one, `Engine.forget` applies a
forget set with a strategy and publishes a new version. docs/unlearning.md is the contract it implements.
"""
