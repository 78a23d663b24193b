"""Segmentation, localization and scanning at the command line.

* ``striate segment RUN IMAGE --out overlay.png`` -- the predicted mask of a ``--task segment`` run
  laid over the image.
* ``striate localize RUN IMAGE --out box.png`` -- the box and class of a ``--task localize`` run.
* ``striate scan RUN IMAGE --out heat.png`` -- a classifier run scanned over a larger image as a
  fully convolutional network: one heat map per class.
* ``striate synth shapes|digits-canvas --out DIR`` -- write generated images, masks and boxes.

Training is ``striate train --task segment|localize`` (see :mod:`striate.tasks`).
"""

from __future__ import annotations


def _print(lines) -> int:
    for line in lines:
        print(line)
    return 0


def _cmd_segment(args) -> int:
    from ..tasks.segment import segment_file

    return _print(segment_file(args.checkpoint, args.image, args.out, alpha=args.alpha))


def _cmd_localize(args) -> int:
    from ..tasks.localize import localize_file

    return _print(localize_file(args.checkpoint, args.image, args.out))


def _cmd_scan(args) -> int:
    from ..tasks.scan import scan_file

    return _print(scan_file(args.checkpoint, args.image, args.out, probabilities=not args.logits))


def _cmd_synth(args) -> int:
    from ..tasks.samples import write_samples

    paths = write_samples(args.data, args.out, count=args.count, seed=args.seed, split=args.split)
    print(f"wrote {len(paths)} images ({paths[0].name} ...), their masks and boxes.csv to {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="overlay the mask predicted by a --task segment run on an image")
    p.add_argument("checkpoint", help="a run directory of `striate train --task segment`")
    p.add_argument("image", help="a PNG/JPEG file (any size)")
    p.add_argument("--out", default="overlay.png", help="output PNG: the image and the overlay side by side")
    p.add_argument("--alpha", type=float, default=0.55, help="opacity of the class colours (0..1)")
    p.set_defaults(func=_cmd_segment)

    p = subparsers.add_parser("localize", help="draw the box and class predicted by a --task localize run")
    p.add_argument("checkpoint", help="a run directory of `striate train --task localize`")
    p.add_argument("image", help="a PNG/JPEG file (resized to the run's input size for the network)")
    p.add_argument("--out", default="box.png", help="output PNG")
    p.set_defaults(func=_cmd_localize)

    p = subparsers.add_parser("scan", help="scan a classifier over a larger image: per-class heat maps")
    p.add_argument("checkpoint", help="a run directory of `striate train` (a classifier such as LeNet-5)")
    p.add_argument("image", help="a PNG/JPEG file at least as large as the classifier's input")
    p.add_argument("--out", default="heat.png", help="output PNG")
    p.add_argument("--logits", action="store_true", help="map raw class scores instead of probabilities")
    p.set_defaults(func=_cmd_scan)

    p = subparsers.add_parser("synth", help="write generated images with masks and boxes (shapes, digits-canvas)")
    p.add_argument("data", help="shapes | digits-canvas, with options as in --data (e.g. shapes:size=64)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="the --seed of the run these images belong to")
    p.add_argument("--split", default="held", choices=("held", "train"),
                   help="held-out images (never seen in training) or training images")
    p.set_defaults(func=_cmd_synth)
