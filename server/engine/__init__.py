"""The unlearning engine: the model, sliced training, checkpoints, increments, strategies and the Engine.

Start at `engine.Engine`: `Engine.train` builds a store (building.py), `Engine.open` loads one (state.py),
`Engine.plan` and `Engine.forget` plan a forget set (planning.py), apply it with a strategy (strategies.py,
one shard at a time; newton.py for INFLUENCE and the linear family of linear.py) and publish a new version
(forgetting.py); encoder_residue.py names the categories a forget leaves without a training row;
reports.py holds what they return, gold.py the gold standard.
docs/unlearning.md is the contract it implements.
"""
