"""``fbrs-jax`` command line. Errors are one line on stderr: exit 2 for usage, 1 for data problems;
``--debug`` shows the traceback instead."""
from __future__ import annotations

import argparse
import sys
import time


def _cmd_convert(args) -> int:
    from .convert.loading import convert
    t0 = time.perf_counter()
    model = convert(args.src, args.dst)
    print(f'{args.src} -> {args.dst}: {model.arch.name}, {model.num_values:,} values '
          f'({model.num_params:,} trainable), sha256 {model.source["sha256"][:12]}, '
          f'{time.perf_counter() - t0:.1f} s')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='fbrs-jax', description=__doc__)
    p.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert', help='convert an official .pth checkpoint to a converted directory')
    c.add_argument('src', help='official f-BRS .pth file')
    c.add_argument('dst', help='output directory (created)')
    c.set_defaults(func=_cmd_convert)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print('fbrs-jax: interrupted', file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line unless --debug
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f'fbrs-jax: error: {msg}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
