"""The command line shared by tools/data/make_toy_*.py."""
import argparse
from typing import Callable, Tuple


def generate_from_command_line(description: str, make: Callable, out: str, num_train: int,
                               num_val: int, argv=None, **options: Tuple[int, str]) -> None:
    """Parse --out/--num-train/--num-val/--seed, plus an integer flag per ``options`` entry
    (``name=(default, help)``, passed to ``make`` as ``name``), run ``make`` and print where
    the files went."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--out', default=out, help='output folder')
    parser.add_argument('--num-train', type=int, default=num_train)
    parser.add_argument('--num-val', type=int, default=num_val)
    parser.add_argument('--seed', type=int, default=0)
    for name, (default, help) in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=help)
    args = parser.parse_args(argv)
    paths = make(args.out, num_train=args.num_train, num_val=args.num_val, seed=args.seed,
                 **{name: getattr(args, name) for name in options})
    for name, path in paths.items():
        print(f'{name}: {path}')
