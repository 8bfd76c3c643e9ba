"""TensorFlow Lite: tw.convert (``conversion``) with the converter it sets up (``converter``) and the recurrent
layers and loops it handles (``recurrent``); the converted file read back from its flatbuffer (``file``,
tw.TFLiteModel, no TensorFlow needed); and tw.evaluate with the LiteRT interpreter (``evaluation``).

Imports ``model``, ``data``, ``targets``, the runtime and ``errors``; never ``plan``, ``techniques`` or anything above.
"""
