"""The script runtime: the TensorFlow, tf_keras and tfmot calls behind every step, with public names.

The engine uses these functions, and ``Plan.to_python`` inlines the modules of :data:`MODULES` whole, in that order,
into the script it writes: the script computes what the engine computes and never imports tfopt-widgets. So the
modules here import only numpy, TensorFlow, tf_keras and tfmot (never the package, never each other), raise only
their own or the stack's errors, and take plain data (layer names, dicts of settings), never a Plan.

- ``tflite``: calibration samples, the converter for a Keras model and its settings, the repair of int8 biases that
  the converter quantizes at the wrong scale in partly quantization-aware models.
- ``ops``: which user layer each layer of a model stands for, which op of a converted file computes it, and
  selective int8. Imports nothing up front, so ``tw.TFLiteModel`` reads files without loading TensorFlow.
- ``precision``: LiteRT Quantizer per layer: recipes from plain data (a plan's precisions, a file's op table),
  LiteRT's own checks of them, quantizing a converted file.
- ``training``: fine-tuning, the prune / cluster / quantize annotations, QAT schemes, the layers QAT folds
  together, kernels; every private path of tfmot and tf_keras the package uses.

A script gets the modules it calls: ``tflite`` always, ``ops`` when it fine-tunes or keeps layers float in an int8
file or gives layers a precision, ``precision`` when the plan has precisions, ``training`` when it fine-tunes.
"""

import os

# Before TensorFlow loads (the script's header does the same): quiet C++ start-up logs, and `tf.keras` means tf_keras
# (tfmot works only with Keras 2) whatever the import order.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

MODULES = ("tflite", "ops", "precision", "training")
