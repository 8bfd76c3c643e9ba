"""The user's model as the engine sees it: the stack it is built with, Keras 3 and nested models rebuilt as flat
tf_keras ones (``porting``), and every layer with what each technique can do to it (``inspection``, tw.inspect).

Imports the runtime and ``errors`` only; every other room builds on this one.
"""
