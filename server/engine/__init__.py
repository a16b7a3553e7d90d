"""The unlearning engine: the model, sliced training, checkpoints, increments, strategies and the Engine.

Start at `engine.Engine`: `Engine.train` builds a store (building.py), `Engine.open` loads one (state.py),
`Engine.plan` and `Engine.forget` plan a forget set (planning.py), apply it with a strategy (strategies.py,
one shard at a time) and publish a new version (forgetting.py); reports.py holds what they return.
docs/unlearning.md is the contract it implements.
"""
