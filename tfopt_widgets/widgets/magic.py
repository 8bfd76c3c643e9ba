"""The ``%tfopt`` line magic: a Studio for a model variable of the notebook.

    %load_ext tfopt_widgets
    %tfopt model
    %tfopt model --target edgetpu --train train_data --validation validation_data

Names are looked up in the notebook's namespace; data is used only when named with ``--train``/``--validation``
(the magic never guesses which variables hold data).
"""

from __future__ import annotations

import argparse
import shlex


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        from IPython.core.error import UsageError

        raise UsageError(f"%tfopt: {message}\n{self.format_usage()}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%tfopt", add_help=False,
                     description="Show a tfopt-widgets Studio for a tf_keras model variable.")
    parser.add_argument("model", help="name of a tf_keras model variable")
    parser.add_argument("--target", default="cpu", help="cpu, gpu, edgetpu or hexagon (default: cpu)")
    parser.add_argument("--train", default=None, help="name of the training data variable, (x, y) or tf.data")
    parser.add_argument("--validation", default=None, help="name of the validation data variable")
    return parser


def tfopt(ipython, line: str):
    """Build the Studio for ``line`` (``model [--target T] [--train X] [--validation Y]``)."""
    from IPython.core.error import UsageError

    from .studio import Studio

    args = _parser().parse_args(shlex.split(line))
    namespace = ipython.user_ns

    def lookup(name, what):
        if name is None:
            return None
        if name not in namespace:
            raise UsageError(f"%tfopt: no variable named {name!r} for the {what} in this notebook; define it first "
                             "or check the spelling.")
        return namespace[name]

    return Studio(lookup(args.model, "model"), train_data=lookup(args.train, "training data"),
                  validation_data=lookup(args.validation, "validation data"), target=args.target)


def register(ipython) -> None:
    """Register ``%tfopt`` with an IPython shell."""
    ipython.register_magic_function(lambda line: tfopt(ipython, line), magic_kind="line", magic_name="tfopt")
