"""The `keras-transfer` command: transfer learning on a folder of photos.

    keras-transfer fit photos/ --backbone mobilenet_v2 --out runs/photos
    keras-transfer evaluate runs/photos photos/
    keras-transfer predict runs/photos/model.keras image.jpg --top-k 3
    keras-transfer extract photos/ --backbone resnet50 --out features/
    keras-transfer export runs/photos --format litert --quantize int8
    keras-transfer rank photos/ --backbone mobilenet_v2 --backbone resnet50
    keras-transfer backbones
    keras-transfer demo

Exit codes: 0 success; 2 bad arguments or data, or a download that failed
offline (one line says what to fix; `--debug` shows the traceback); 1 a
failed run (a training loss that became NaN or infinite: nothing is
written) or an unexpected failure; 130 interrupted (Ctrl-C), at any point.

This module imports no backend: `--help` is instant, and the backend's
start-up logs are quietened before it loads (`--debug` keeps them).
"""

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
import traceback

from keras_transfer import strategies
from keras_transfer.utils._options import (
    EXPORT_BACKENDS,
    EXPORT_FORMATS,
    PRECISION_POLICIES,
    QUANTIZATIONS,
)

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# The shell's code for a program ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
_COMMANDS = {
    "fit": "fit",
    "evaluate": "evaluate",
    "predict": "predict",
    "extract": "extract",
    "backbones": "backbones",
    "demo": "demo_command",
    "rank": "rank_command",
    "export": "export_command",
}


def main(argv=None):
    """Runs the command line; returns the exit code."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while parsing, loading the backend or running
        print("keras-transfer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv):
    parser = _parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad syntax
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "export":
        _export_backend(args.format)
    shared = _load_commands(quiet=not args.debug)
    try:
        command = importlib.import_module(f"keras_transfer.commands.{args.command}")
        getattr(command, _COMMANDS[args.command])(args)
    except shared.NonFiniteLossError as error:
        if args.debug:
            traceback.print_exc()
        print(f"keras-transfer {args.command}: failed: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except (shared.UsageError, *shared.USAGE_ERRORS) as error:
        if args.debug:
            traceback.print_exc()
        print(f"keras-transfer {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        print(
            f"keras-transfer {args.command}: unexpected failure: {type(error).__name__}: "
            f"{error}\n(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _export_backend(format):
    """A `.keras` file loads under any backend: before Keras is imported,
    choose one that exports `format` (the user's, where it can), so a run
    trained under JAX exports to LiteRT."""
    allowed = EXPORT_BACKENDS[format]
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND") in allowed:
        return  # already loaded (a call from Python): the exporter says what to do
    for name in allowed:
        if importlib.util.find_spec(name) is not None:
            os.environ["KERAS_BACKEND"] = name
            return


def _defaults(flag):
    """A flag's defaults, as the strategy table gives them."""
    values = [
        f"{row.name} {value:g}"
        for row in strategies.STRATEGIES.values()
        for option, value in row.defaults
        if strategies.FLAGS[option] == flag
    ]
    return "default: " + ", ".join(values)


def _load_commands(quiet):
    """Imports what the sub-commands share, and so Keras and its backend.
    Deferred to here (not a cycle: the sub-commands never import this
    module) so that the logs can be quietened first."""
    if not quiet:
        return importlib.import_module("keras_transfer.commands._shared")
    # TensorFlow's C++ log level; its absl lines from before logging is set
    # up ("All log messages before absl::InitializeLog()", the CUDA probe)
    # go to file descriptor 2 whatever the level: hide it while loading.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_hidden():
        return importlib.import_module("keras_transfer.commands._shared")


@contextlib.contextmanager
def _stderr_hidden():
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (an embedded interpreter)
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


# --- Parser -------------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning on a folder of images.",
        epilog="Exit codes: 0 success, 2 bad arguments or data, 1 a failed run (NaN loss) or "
        "an unexpected failure, 130 interrupted.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--quiet", action="store_true", help="no progress output")
        sub.add_argument("--debug", action="store_true", help="show tracebacks")
        return sub

    def backbone_args(sub, required=True):
        sub.add_argument(
            "--backbone",
            required=required,
            default="mobilenet_v2",
            help="a registered name (see `keras-transfer backbones`), or a KerasHub preset: "
            "keras_hub:NAME, kaggle://..., hf://..., or a save_to_preset directory",
        )
        sub.add_argument(
            "--backbone-arg",
            action="append",
            metavar="KEY=VALUE",
            help="constructor argument, e.g. alpha=0.35 (repeatable)",
        )
        sub.add_argument(
            "--weights",
            default="imagenet",
            help="imagenet, none, or a file: .weights.h5, .keras, a Keras 2 "
            ".h5, or a .npz from save_weights_npz",
        )
        sub.add_argument("--image-size", type=int, default=224)
        sub.add_argument("--batch-size", type=int, default=32)

    sub = command("fit", "Train a transfer model on DATA_DIR; write a run report.")
    sub.add_argument(
        "data_dir", metavar="DATA_DIR", help="one sub-folder per class, or train/ and val/"
    )
    backbone_args(sub)
    sub.add_argument(
        "--strategy",
        choices=strategies.NAMES,
        default="auto",
        help="; ".join(f"{row.name}: {row.summary}" for row in strategies.STRATEGIES.values())
        + ". Default auto, with its random resized crops and flips (see --no-flip); the others "
        "are fixed recipes",
    )
    sub.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="fixed strategies: epochs (after --freeze-epochs head-only ones for fine_tune "
        f"and gradual); {_defaults('--epochs')}",
    )
    sub.add_argument(
        "--freeze-epochs",
        type=int,
        default=None,
        help=f"fixed strategies; {_defaults('--freeze-epochs')}",
    )
    sub.add_argument(
        "--no-flip",
        action="store_true",
        help="auto: no horizontal flips in the default augmentation (where mirroring changes "
        "the class: text, digits, left and right)",
    )
    sub.add_argument(
        "--no-balance",
        action="store_true",
        help="auto, fine_tune and gradual: every image weighs the same, even where the largest "
        "class has 3 times the images of the smallest (by default each class then counts alike)",
    )
    sub.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"fixed strategies; {_defaults('--lr')}",
    )
    split = sub.add_mutually_exclusive_group()
    split.add_argument("--val-split", type=float, default=0.2)
    split.add_argument("--val-dir", metavar="DIR")
    sub.add_argument("--out", metavar="RUN_DIR")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    sub.add_argument(
        "--mixed-precision",
        nargs="?",
        const="auto",
        default="auto",
        choices=("auto", *PRECISION_POLICIES),
        help="dtype policy; auto: bfloat16 or float16 on a GPU, float32 on CPU",
    )
    sub.add_argument("--seed", type=int, default=0)

    sub = command("extract", "Extract features of DATA_DIR to a feature store.")
    sub.add_argument("data_dir", metavar="DATA_DIR")
    backbone_args(sub)
    sub.set_defaults(batch_size=100)
    sub.add_argument("--layer", default="last_conv")
    sub.add_argument("--pooling", default="avg")
    sub.add_argument("--out", required=True, metavar="FEATURES")
    sub.add_argument("--overwrite", action="store_true")

    sub = command("evaluate", "Evaluate a run (or a .keras model) on DATA_DIR.")
    sub.add_argument("model", metavar="RUN_DIR|MODEL")
    sub.add_argument("data_dir", metavar="DATA_DIR", help="class folders (its val/ if it has one)")
    sub.add_argument("--batch-size", type=int, default=32)
    sub.add_argument("--top-losses", type=int, default=12, help="the mistakes to show")
    sub.add_argument("--out", metavar="DIR", help="default: RUN_DIR/evaluation")
    sub.add_argument("--overwrite", action="store_true")

    sub = command("predict", "Print the top classes of images.")
    sub.add_argument("model", metavar="RUN_DIR|MODEL")
    sub.add_argument("images", metavar="IMAGE|DIR", nargs="+")
    sub.add_argument("--top-k", type=int, default=1)
    sub.add_argument("--batch-size", type=int, default=32)
    sub.add_argument(
        "--json", action="store_true", help="JSON lines: one object an image, as they come"
    )
    sub.add_argument(
        "--no-unknown",
        action="store_true",
        help="always answer a class: no unknown below the run's threshold",
    )

    sub = command("export", "Export a run's model to LiteRT, ONNX or a SavedModel, and check it.")
    sub.add_argument("model", metavar="RUN_DIR|MODEL")
    sub.add_argument("--format", choices=EXPORT_FORMATS, default="litert")
    sub.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="litert: float16 or int8 weights (dynamic), or int8 weights and activations "
        "(int8, calibrated on --calibration or the run's training photos)",
    )
    sub.add_argument("--calibration", metavar="DIR", help="int8: photos, no labels needed")
    sub.add_argument(
        "--check",
        metavar="DIR",
        help="class folders for the parity check (default: the run's validation photos)",
    )
    sub.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        help="quantized: the most accuracy points the export may lose on the check (default 1)",
    )
    sub.add_argument("--out", metavar="DIR", help="default: RUN_DIR/export/FORMAT[_QUANTIZE]")
    sub.add_argument("--overwrite", action="store_true", help="replace an earlier export")

    sub = command("backbones", "List the registered backbones.")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--markdown", action="store_true")

    sub = command("rank", "Rank backbones (or one backbone's layers) for DATA_DIR.")
    sub.add_argument("data_dir", metavar="DATA_DIR", help="class folders (its train/ if split)")
    sub.add_argument(
        "--backbone",
        action="append",
        required=True,
        metavar="NAME[:KEY=VALUE,...]",
        help="a candidate, repeated: a registered name with its weights and constructor "
        "arguments, e.g. mobilenet_v2:alpha=0.35,weights=w.h5 (weights default: imagenet)",
    )
    sub.add_argument("--layers", nargs="+", metavar="LAYER", help="rank these taps of one backbone")
    sub.add_argument("--by", default="logme", help="the score that orders the table")
    sub.add_argument("--image-size", type=int, default=224)
    sub.add_argument("--batch-size", type=int, default=32)
    sub.add_argument("--cache", metavar="DIR", help="the feature stores (default ~/.keras/...)")
    sub.add_argument("--no-cache", action="store_true", help="keep no features")
    sub.add_argument("--out", metavar="DIR", default="runs/rank")
    sub.add_argument("--overwrite", action="store_true")

    sub = command("demo", "Compare strategies: clean digits -> noisy scans, or --data photos.")
    sub.add_argument("--data", metavar="DIR", help="photos (class folders or train/ val/)")
    sub.add_argument("--weights", help="with --data: the backbone's weights (file or imagenet)")
    sub.add_argument("--backbone", default="mobilenet_v2")
    sub.add_argument("--backbone-arg", action="append", metavar="KEY=VALUE")
    sub.add_argument("--epochs", type=int, default=None, help="default: 20 digits, 6 photos")
    sub.add_argument("--image-size", type=int, default=160)
    sub.add_argument("--shots", type=int, default=10, help="labelled target images per class")
    sub.add_argument("--out", metavar="DIR", default="runs/demo")
    sub.add_argument("--overwrite", action="store_true")
    sub.add_argument("--seed", type=int, default=0)
    return parser


if __name__ == "__main__":
    sys.exit(main())
