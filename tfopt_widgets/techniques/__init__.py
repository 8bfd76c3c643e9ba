"""The techniques: tw.optimize (``optimization``) applies a plan's prune, cluster and quantize stages with tfmot
on a copy of the user's model, fine-tuning after each through the runtime, and returns tw.OptimizedModel.

Imports ``plan``, ``model``, ``data``, the runtime and ``errors``.
"""
