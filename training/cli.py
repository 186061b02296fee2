"""``python -m training {explore,train,evaluate,predict,embed,export-lite,...}``: the pipeline from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from training.errors import TrainingError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    explore = commands.add_parser("explore", help="class counts, sample grid, sizes, bad files")
    explore.add_argument("data_dir", help="folder with one sub-folder per class")
    explore.add_argument("--out", required=True, help="folder for the plots and explore.json")

    train = commands.add_parser("train", help="train a model bundle")
    train.add_argument("data_dir", help="folder with one sub-folder per class")
    train.add_argument("--out", required=True, help="run folder; becomes the model bundle")
    train.add_argument("--weights", default="imagenet",
                       help="'imagenet' (download), 'none' (from scratch) or a local no-top weights file")
    from training.train import TrainConfig  # the defaults live in one place: TrainConfig

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
        ("init_from", "start from this bundle's weights (continue a run)"),
    ]:
        default = getattr(defaults, name)
        train.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                           help=f"{help_text} (default {default!r})")

    train.add_argument("--no-base-embeddings", dest="base_embeddings", action="store_false",
                       help="do not store the splits' embeddings in the bundle (e.g. when pretraining a backbone)")
    train.add_argument("--resume", action="store_true",
                       help="continue the unfinished run checkpointed in OUT.resume/ (same options)")

    evaluate = commands.add_parser("evaluate", help="metrics and plots of a bundle on a dataset")
    evaluate.add_argument("bundle")
    evaluate.add_argument("data_dir")
    evaluate.add_argument("--split", choices=["test", "all"], default="test",
                          help="'test': the bundle's own test split; 'all': every image")
    evaluate.add_argument("--out", help="folder for report.txt and confusion.png "
                          "(default BUNDLE/evaluation/<data folder>-<split>)")

    demo = commands.add_parser("demo-images", help="copy a few test-split images per class (the station's demo feed)")
    demo.add_argument("bundle")
    demo.add_argument("data_dir")
    demo.add_argument("--out", required=True, help="folder to fill (created; must be empty)")
    demo.add_argument("--per-class", type=int, default=5)
    demo.add_argument("--seed", type=int, default=0)

    embed = commands.add_parser(
        "embed", help="store the backbone embeddings of the bundle's train and test splits in the bundle",
        description="Writes BUNDLE/base-embeddings.npz, so fast retraining needs no copy of the base data. "
        "`train` does this itself; use it for a bundle trained before, or after replacing model.keras.")
    embed.add_argument("bundle")
    embed.add_argument("data_dir", help="the dataset the bundle was trained on (its split.json names the files)")

    lite = commands.add_parser(
        "export-lite", help="convert the bundle's backbone to LiteRT (BUNDLE/backbone.tflite) for fast inference",
        description="Writes BUNDLE/backbone.tflite (the backbone, pixels -> embedding, for the LiteRT interpreter) "
        "and BUNDLE/backbone.json (which backbone it was made from). `train` and retraining do this themselves; "
        "use it for a bundle made before.")
    lite.add_argument("bundle")

    predict = commands.add_parser("predict", help="label image files, one JSON line each")
    predict.add_argument("bundle")
    predict.add_argument("images", nargs="+")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written to the output folder", file=sys.stderr)
        return 130


def run_explore(args: argparse.Namespace) -> int:
    from training.explore import explore

    explore(args.data_dir, args.out)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from training.train import TrainConfig, train

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if config.weights.lower() == "none":
        config.weights = "none"
    train(config, resume=args.resume)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_bundle
    from training.model import load_bundle

    bundle = load_bundle(args.bundle)
    default_out = bundle.path / "evaluation" / f"{Path(args.data_dir).resolve().name}-{args.split}"
    out = Path(args.out) if args.out else default_out
    metrics = evaluate_bundle(bundle, args.data_dir, args.split, out)
    print((out / "report.txt").read_text())
    print(f"wrote report.txt and confusion.png to {out}")
    print(json.dumps(metrics))
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from training.embeddings import write_base_embeddings
    from training.model import load_bundle

    path = write_base_embeddings(load_bundle(args.bundle), Path(args.data_dir))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_export_lite(args: argparse.Namespace) -> int:
    from training.lite import write_backbone
    from training.model import load_bundle

    path = write_backbone(load_bundle(args.bundle).model, Path(args.bundle))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
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
}
