"""Does the SSM's long-range mixing help, and from which distance on? Target accuracy on the
long-range toy against the marker–target distance, for MambaOut and its SS2D twin, with
UperNet's global paths (a) and without any (b); see mmambaout/analysis/longrange.py.

    python tools/analysis/longrange_sweep.py [--out DIR] [--distances D ...] [--seeds S ...]
    python tools/analysis/longrange_sweep.py --quick      # one seed, two distances, 40 iters

Writes DIR/results.csv (a row per cell, as each finishes), DIR/curves.csv and DIR/longrange.png
(accuracy against distance with the seeds' spread, plain MambaOut's receptive field in setting
(b), learning curves). Run again with the same recipe (--iters, --num-train, --num-val,
--width), it trains only the cells missing from results.csv: an interrupted sweep resumes, and
more seeds or distances extend one. Trains on a GPU when there is one.
"""
import argparse
from pathlib import Path

from mmambaout.analysis.longrange import (CONFIGS, MODELS, SETTINGS, Recipe, grid, local_reach,
                                          plot, run_sweep, summary_table)

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'configs' / 'toy'
FULL = dict(out='work_dirs/longrange_sweep', distances=[32, 64, 128, 192, 256], seeds=[0, 1, 2],
            iters=None, num_train=1000, num_val=200, width=320)
QUICK = dict(out='work_dirs/longrange_quick', distances=[32, 192], seeds=[0], iters=40,
             num_train=64, num_val=24, width=320)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help=f'defaults for a smoke run: {QUICK} (each flag still overrides)')
    parser.add_argument('--out', type=Path, help=f"sweep folder (default {FULL['out']})")
    parser.add_argument('--distances', type=int, nargs='+', help=f"px (default "
                        f"{FULL['distances']})")
    parser.add_argument('--seeds', type=int, nargs='+', help=f"default {FULL['seeds']}")
    parser.add_argument('--settings', nargs='+', choices=sorted(SETTINGS),
                        default=sorted(SETTINGS),
                        help='global: (a) UperNet; local: (b) FCN on stride 8 (default both)')
    parser.add_argument('--models', nargs='+', choices=MODELS, default=MODELS,
                        help='default both')
    parser.add_argument('--iters', type=int, help='training iterations per cell (default: the '
                        "configs' max_iters; the schedule is stretched to fit)")
    parser.add_argument('--num-train', type=int, help=f"training strips per distance (default "
                        f"{FULL['num_train']})")
    parser.add_argument('--num-val', type=int, help=f"validation strips per distance (default "
                        f"{FULL['num_val']})")
    parser.add_argument('--width', type=int, help=f"strip width, px (default {FULL['width']})")
    parser.add_argument('--jobs', type=int, default=1,
                        help='cells trained at once, each in a process of its own sharing the '
                        'threads (default 1; 2 on 2 CPU cores runs the full sweep in about half '
                        'the time)')
    args = parser.parse_args(argv)
    for key, default in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if args.iters is None:
        from mmengine.config import Config
        args.iters = Config.fromfile(CONFIG_DIR / CONFIGS['global', 'MambaOut']).max_iters
    recipe = Recipe(args.iters, args.num_train, args.num_val, args.width)
    window, reach = local_reach(CONFIG_DIR, args.width)
    print(f'Plain MambaOut in setting (b): each logit sees {window.size} px (stride '
          f'{window.jump}); an output pixel sees {reach[0]}-{reach[1]} px to either side.')

    def draw(results, curves):
        plot(results, curves, reach, out / 'longrange.png')

    cells = grid(args.distances, args.seeds, args.settings, args.models)
    results, curves = run_sweep(out, CONFIG_DIR, cells, recipe, draw, args.jobs)
    draw(results, curves)
    print('\nTarget pixel accuracy (%, mean and min-max over seeds; chance 33.3):\n')
    print(summary_table(results))
    print(f'\nWrote {out / "results.csv"}, {out / "curves.csv"}, {out / "longrange.png"}')


if __name__ == '__main__':
    main()
