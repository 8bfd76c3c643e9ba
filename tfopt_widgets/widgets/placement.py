"""Per-layer placement badges and the share of ops on the accelerator, read from a converted file.

``TFLiteModel.compatibility`` (the targets work) may or may not exist in this version of the engine; without it
there are no badges and the share is unknown (None), and the Studio works the same.
"""

from __future__ import annotations


def placement_of(tflite) -> tuple[dict, float | None]:
    """``({user layer: (accelerated True/False/None, reason)}, share of ops on the accelerator or None)``."""
    compatibility = getattr(tflite, "compatibility", None)
    if compatibility is None:
        return {}, None
    by_layer = getattr(compatibility, "by_layer", None)
    layers = {}
    if callable(by_layer):
        for layer, place in by_layer().items():
            layers[layer] = (getattr(place, "accelerated", None), getattr(place, "reason", "") or "")
    try:
        entries = list(compatibility)
    except TypeError:  # not a sequence of per-op entries
        entries = []
    flags = [getattr(entry, "accelerated", None) for entry in entries]
    known = [flag for flag in flags if flag is not None]
    share = sum(bool(flag) for flag in known) / len(known) if known else None
    if not layers:  # roll the per-op entries up: a layer is accelerated when all its ops are
        for entry in entries:
            layer = getattr(entry, "layer", None)
            if layer is None:
                continue
            accelerated, reason = layers.get(layer, (True, ""))
            if getattr(entry, "accelerated", None) is False:
                accelerated, reason = False, reason or getattr(entry, "reason", "") or ""
            layers[layer] = (accelerated, reason)
    return layers, share
