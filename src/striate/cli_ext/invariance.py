"""``striate invariance RUN [RUN2] --out DIR``: held-out accuracy under controlled transformations.

Each RUN is a directory written by ``striate train``.  Its held-out split is rotated (-45..45
degrees), scaled (0.7..1.3), translated (-4..4 px along x and y), flipped, and elastically
deformed (alpha 0..40), one fixed strength at a time; DIR receives ``invariance.csv``,
``invariance.md`` and ``invariance.png`` (both runs on the same axes when two are given).  See
:mod:`striate.invariance`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _cmd_invariance(args) -> int:
    from ..invariance import compare

    runs = [args.checkpoint] + ([args.checkpoint2] if args.checkpoint2 else [])
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    sweeps = [s.strip() for s in args.transforms.split(",") if s.strip()] if args.transforms else None
    out = Path(args.out) if args.out else Path(runs[0]) / "invariance"
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = compare(runs, out, labels=labels, data=args.data, limit=args.limit, seed=args.seed,
                     boundary=args.boundary, quick=args.quick, sweep_names=sweeps, progress=progress)
    print(result["markdown"].read_text())
    print(f"wrote {result['csv']}, {result['markdown']}, {result['png']}")
    return 0


def register(subparsers) -> None:
    from ..invariance import SWEEP_NAMES

    p = subparsers.add_parser(
        "invariance", help="accuracy of a checkpoint under rotation, scaling, translation, flips, elastic deformation",
        description="Evaluate one or two trained runs on their held-out split under controlled transformations; "
                    "write a CSV and markdown table and a PNG plot of accuracy against strength.")
    p.add_argument("checkpoint", help="a run directory written by `striate train`")
    p.add_argument("checkpoint2", nargs="?", default=None, help="a second run to compare on the same plot")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default RUN/invariance)")
    p.add_argument("--labels", default=None, metavar="A,B", help="names for the runs (default: directory names)")
    p.add_argument("--transforms", default=None, metavar="LIST",
                   help=f"comma-separated subset of: {', '.join(SWEEP_NAMES)} (default all)")
    p.add_argument("--data", default=None, help="measure on another data source")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N held-out images")
    p.add_argument("--boundary", default="zeros", choices=("zeros", "edge"),
                   help="what pixels moved in from outside show (zeros: black, before standardisation)")
    p.add_argument("--seed", type=int, default=0, help="seed of the elastic displacement fields")
    p.add_argument("--quick", action="store_true", help="about a third of the strengths (a fast preview)")
    p.add_argument("--quiet", action="store_true", help="no per-measurement progress lines")
    p.set_defaults(func=_cmd_invariance)
