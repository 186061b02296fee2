"""``python -m training {explore,train,evaluate,predict,embed,export-lite,...}``: the pipeline from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.errors import TrainingError
from training.quiet import import_tensorflow, quiet_libraries

DATASET_HINT = "(TrashNet: see 'Datasets' in the README)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every library message (TensorFlow's start-up notes, OpenCV warnings)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bundle_help = "model bundle folder (model.keras, labels.json, ...)"

    explore = add_command(commands, "explore", help="class counts, sample grid, sizes, bad files")
    explore.add_argument("data_dir", help="folder with one sub-folder per class")
    explore.add_argument("--out", required=True, help="folder for the plots and explore.json")

    train = add_command(commands, "train", help="train a model bundle")
    train.add_argument("data_dir", help="folder with one sub-folder per class")
    train.add_argument("--out", required=True, help="run folder; becomes the model bundle")
    train.add_argument("--weights", default="imagenet",
                       help="'imagenet' (downloaded into ~/.keras/models on first use: needs internet, "
                       "or the file already there), 'none' (from scratch, works offline) or a local "
                       "efficientnetv2-b2_notop.h5 / .weights.h5 file")
    from training.config import TrainConfig  # the defaults live in one place: TrainConfig

    defaults = TrainConfig(data_dir="", out="")
    for name, help_text in [
        ("image_size", "model input size in pixels"),
        ("epochs", "head-phase epochs (from scratch: progressive-resizing epochs)"),
        ("fine_tune_epochs", "fine-tuning epochs (from scratch: final low-rate epochs at full size)"),
        ("batch_size", "images per batch"),
        ("seed", "seed for the split, shuffling and initialisation"),
        ("learning_rate", "head / from-scratch peak learning rate"),
        ("fine_tune_learning_rate", "learning rate of the fine-tuning phase"),
        ("fine_tune_fraction", "share of backbone layers unfrozen for fine-tuning"),
        ("weight_decay", "AdamW weight decay"),
        ("dropout", "dropout before the classifier"),
        ("label_smoothing", "label smoothing of the loss"),
        ("augment", "augmentation strength 0..1"),
        ("mixup", "mixup alpha (0 = off)"),
        ("patience", "early-stopping patience in epochs"),
        ("stages", "from scratch: progressive-resizing stages"),
        ("min_image_size", "from scratch: first-stage image size (0 = half of --image-size)"),
        ("warmup_epochs", "from scratch: learning-rate warm-up epochs"),
        ("val_fraction", "share of each class for validation"),
        ("test_fraction", "share of each class held out for the test"),
        ("init_from", "start from this bundle's weights (continue a run); only its backbone when its classes differ"),
    ]:
        default = getattr(defaults, name)
        train.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                           help=f"{help_text} (default %(default)r)")

    train.add_argument("--no-base-embeddings", dest="base_embeddings", action="store_false",
                       help="do not store the splits' embeddings in the bundle (e.g. when pretraining a backbone)")
    train.add_argument("--resume", action="store_true",
                       help="continue the unfinished run checkpointed in OUT.resume/ (same options)")

    evaluate = add_command(commands, "evaluate", help="metrics and plots of a bundle on a dataset")
    evaluate.add_argument("bundle", help=bundle_help)
    evaluate.add_argument("data_dir", help=f"folder with one sub-folder per class {DATASET_HINT}")
    evaluate.add_argument("--split", choices=["test", "all"], default="test",
                          help="'test': the bundle's own test split; 'all': every image")
    evaluate.add_argument("--out", help="folder for report.txt and confusion.png "
                          "(default BUNDLE/evaluation/<data folder>-<split>)")

    demo = add_command(commands, "demo-images", help="copy a few test-split images per class (the station's demo feed)")
    demo.add_argument("bundle", help=bundle_help)
    demo.add_argument("data_dir", help="the dataset the bundle was trained on (its split.json names the files)")
    demo.add_argument("--out", required=True, help="folder to fill (created; must be empty)")
    demo.add_argument("--per-class", type=int, default=5, help="images per class")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random pick")

    embed = add_command(commands,
        "embed", help="store the backbone embeddings of the bundle's train and test splits in the bundle",
        description="Writes BUNDLE/base-embeddings.npz, so fast retraining needs no copy of the base data. "
        "`train` does this itself; use it for a bundle trained before, or after replacing model.keras.")
    embed.add_argument("bundle", help=bundle_help)
    embed.add_argument("data_dir", help="the dataset the bundle was trained on (its split.json names the files)")

    lite = add_command(
        commands, "export-lite",
        help="convert the bundle's backbone to LiteRT (BUNDLE/backbone.tflite) for fast inference",
        description="Writes BUNDLE/backbone.tflite (the backbone, pixels -> embedding, for the LiteRT interpreter) "
        "and BUNDLE/backbone.json (which backbone it was made from). `train` and retraining do this themselves; "
        "use it for a bundle made before.")
    lite.add_argument("bundle", help=bundle_help)
    backbone = add_command(
        commands, "export-backbone",
        help="write the bundle's backbone as a no-top weights file, for `train --weights FILE`",
        description="Writes the EfficientNetV2B2 backbone of BUNDLE (without its pooling and head) to OUT, a Keras "
        ".weights.h5 file that `train --weights OUT` starts from, like ImageNet weights: a backbone pretrained on "
        "a broad image set, then fine-tuned on TrashNet.")
    backbone.add_argument("bundle", help=bundle_help)
    backbone.add_argument("out", help="weights file to write (name ending in .weights.h5)")

    predict = add_command(commands, "predict", help="label image files, one JSON line each")
    predict.add_argument("bundle", help=bundle_help)
    predict.add_argument("images", nargs="+", help="image files to label")
    return parser


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A sub-command whose --help shows every default; -v works after its name too."""
    command = commands.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)
    command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="show every library message")
    return command


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # no TensorFlow yet: --help and mistakes are answered at once
    quiet_libraries(args.verbose)
    show_progress_lines()
    try:
        check_data_dir(args)
        import_tensorflow()  # every command uses it; its start-up notes filtered unless --verbose
        return COMMANDS[args.command](args)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a file that vanished mid-run: one line, not a traceback
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written to the output folder", file=sys.stderr)
        return 130


class StdoutLines(logging.Handler):
    """Each record as a plain line: progress on stdout, warnings and errors on stderr (the streams are looked up
    per line, so redirecting them works)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr if record.levelno >= logging.WARNING else sys.stdout, flush=True)


def show_progress_lines() -> None:
    """What the pipeline logs (split, phases, results) goes to stdout as plain lines, once."""
    logger = logging.getLogger("training")
    if not any(isinstance(h, StdoutLines) for h in logger.handlers):
        logger.addHandler(StdoutLines())
    logger.setLevel(logging.INFO)


def check_data_dir(args: argparse.Namespace) -> None:
    """A data folder named on the command line must exist: say which one (absolute), before any work."""
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise TrainingError(f"data folder not found: {Path(data_dir).expanduser().resolve()} {DATASET_HINT}")


def check_split_files(data_dir: str | Path, relpaths: Sequence[str], what: str) -> None:
    """Every file a bundle's split names must be in ``data_dir``; otherwise one line naming the first missing."""
    root = Path(data_dir)
    missing = [rel for rel in relpaths if not (root / rel).is_file()]
    if missing:
        raise TrainingError(
            f"{len(missing)} of the {len(relpaths)} {what} images are not in {root.resolve()} "
            f"(first: {missing[0]}); is it the dataset the bundle was trained on? {DATASET_HINT}")


def run_explore(args: argparse.Namespace) -> int:
    from training.explore import explore

    explore(args.data_dir, args.out)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from training.config import TrainConfig
    from training.train import train

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if config.weights.lower() == "none":
        config.weights = "none"
    train(config, resume=args.resume)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from training.data import load_split
    from training.evaluate import evaluate_bundle
    from training.model import load_bundle

    bundle = load_bundle(args.bundle)
    if args.split == "test":
        check_split_files(args.data_dir, load_split(bundle.path / "split.json")["test"], "test-split")
    default_out = bundle.path / "evaluation" / f"{Path(args.data_dir).resolve().name}-{args.split}"
    out = Path(args.out) if args.out else default_out
    metrics = evaluate_bundle(bundle, args.data_dir, args.split, out)
    print((out / "report.txt").read_text())
    print(f"wrote report.txt and confusion.png to {out}")
    print(json.dumps(metrics))
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from training.data import load_split
    from training.embeddings import write_base_embeddings
    from training.model import load_bundle

    bundle = load_bundle(args.bundle)
    split = load_split(bundle.path / "split.json")
    check_split_files(args.data_dir, split["train"] + split["test"], "train- and test-split")
    path = write_base_embeddings(bundle, Path(args.data_dir))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_export_lite(args: argparse.Namespace) -> int:
    from training.lite import write_backbone
    from training.model import load_bundle

    path = write_backbone(load_bundle(args.bundle).model, Path(args.bundle))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_export_backbone(args: argparse.Namespace) -> int:
    import os

    from training.model import backbone_of, load_bundle

    out = Path(args.out)
    if not out.name.endswith(".weights.h5"):
        raise TrainingError(f"{out}: the file name must end in .weights.h5 (Keras's weights format)")
    out.parent.mkdir(parents=True, exist_ok=True)
    backbone = backbone_of(load_bundle(args.bundle).model)
    work = out.with_name(f".{out.name.removesuffix('.weights.h5')}.partial.weights.h5")  # Keras wants the suffix
    try:
        backbone.save_weights(work)
        os.replace(work, out)  # a reader never sees half a file
    finally:
        work.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(backbone.weights)} arrays); "
          f"train from it with --weights {out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from training.model import load_bundle
    from training.predict import predict_files

    bundle = load_bundle(args.bundle)
    results = predict_files(bundle, args.images)
    for result in results:
        print(json.dumps(result))
    return 1 if any("error" in r for r in results) else 0


def run_demo_images(args: argparse.Namespace) -> int:
    import random
    import shutil

    from training.data import load_split

    split = load_split(Path(args.bundle) / "split.json")  # no model load: only the manifest matters
    check_split_files(args.data_dir, split["test"], "test-split")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    by_class: dict[str, list[str]] = {}
    for path in split["test"]:
        by_class.setdefault(path.split("/", 1)[0], []).append(path)
    rng = random.Random(args.seed)
    picked = {name: rng.sample(paths, min(args.per_class, len(paths))) for name, paths in sorted(by_class.items())}
    for i in range(args.per_class):  # interleave classes: the sorted folder shows a different class each time
        for name, paths in picked.items():
            if i < len(paths):
                target = out / f"{i + 1:02d}-{name}-{Path(paths[i]).name}"
                shutil.copyfile(Path(args.data_dir) / paths[i], target)
                print(target)
    return 0


COMMANDS = {
    "explore": run_explore,
    "demo-images": run_demo_images,
    "train": run_train,
    "evaluate": run_evaluate,
    "predict": run_predict,
    "embed": run_embed,
    "export-lite": run_export_lite,
    "export-backbone": run_export_backbone,
}
