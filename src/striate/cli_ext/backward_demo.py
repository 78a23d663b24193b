"""``striate backward-demo --out DIR``: the backward pass of a convolution and of pooling, drawn.

Runs `striate.viz.backward_demo.backward_demo`: every step the math prescribes (zeros
inserted for the stride, padding by K-1, flipped filters, dX, dW, max-pool routing, mean-pool
spreading) is computed with plain NumPy, checked against striate's backward, and written as an
annotated PNG.
"""

from __future__ import annotations


def _cmd_backward_demo(args) -> int:
    from ..viz.backward_demo import backward_demo

    demo = backward_demo(args.out, in_channels=args.in_channels, out_channels=args.out_channels, size=args.size,
                         kernel_size=args.kernel_size, stride=args.stride, padding=args.padding,
                         pool_size=args.pool_size, pool_kernel=args.pool_kernel, pool_stride=args.pool_stride,
                         seed=args.seed)
    c = demo.config
    print(f"convolution: {c['in_channels']}x{c['size']}x{c['size']} input, {c['out_channels']} filters "
          f"{c['kernel_size']}x{c['kernel_size']}, stride {c['stride']}, padding {c['padding']}; "
          f"pooling: {c['pool_size']}x{c['pool_size']} map, {c['pool_kernel']}x{c['pool_kernel']} windows, "
          f"stride {c['pool_stride']}")
    worst = max(demo.max_abs_diff.values())
    print(f"every step equals striate's backward (largest difference {worst:.1g})")
    for path in demo.paths:
        print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("backward-demo",
                              help="draw the backward pass of a small convolution and pooling layer, checked")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PNGs (created if needed)")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--out-channels", type=int, default=2)
    p.add_argument("--size", type=int, default=5, help="input height and width (default 5)")
    p.add_argument("--kernel-size", type=int, default=3)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--padding", type=int, default=0)
    p.add_argument("--pool-size", type=int, default=4, help="pooling input height and width (default 4)")
    p.add_argument("--pool-kernel", type=int, default=2)
    p.add_argument("--pool-stride", type=int, default=None, help="default: the pool kernel (no overlap)")
    p.add_argument("--seed", type=int, default=0, help="seed of the small integers drawn")
    p.set_defaults(func=_cmd_backward_demo)
