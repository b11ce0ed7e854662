"""Does the SSM carry evidence farther than MambaOut's convolutions reach? Accuracy on the dense
long-range toy against the distance to the marker, for plain MambaOut, its SS2D twin, both with
1x1 convolutions, and a global-pool control, with the controls and the decision rule of
docs/longrange.md; see mmambaout/analysis/longrange.py.

    python tools/analysis/longrange_sweep.py --jobs 2          # the whole study
    python tools/analysis/longrange_sweep.py --quick           # one seed, 40 iterations
    python tools/analysis/longrange_sweep.py --device cuda --jobs 8 --out DIR

Writes into DIR (default work_dirs/longrange_sweep): cells.csv (a row per cell as it finishes:
time, device, ERF mass beyond the reach at initialisation and trained), results.csv (accuracy
per cell and 16-px distance bin), curves.csv, erf.csv, summary.md (controls, table, Fisher's
exact test, verdict) and longrange.png. Run again with the same recipe (--iters, --num-train,
--num-val, --width, --erf-images, and the arms' config files unchanged), it trains only the
cells missing from cells.csv: an interrupted sweep resumes, and more seeds or arms extend one.
"""
import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'configs' / 'toy'
FULL = dict(out='work_dirs/longrange_sweep', seeds=[0, 1, 2, 3, 4], iters=None, num_train=1200,
            num_val=300, width=320, erf_images=16)
QUICK = dict(out='work_dirs/longrange_quick', seeds=[0], iters=40, num_train=48, num_val=24,
             width=320, erf_images=2)


def parse_args(argv=None):
    from mmambaout.analysis.longrange import ARMS
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help=f'defaults for a smoke run: {QUICK} (each flag still overrides)')
    parser.add_argument('--out', type=Path, help=f"sweep folder (default {FULL['out']})")
    parser.add_argument('--seeds', type=int, nargs='+', help=f"default {FULL['seeds']}")
    parser.add_argument('--arms', nargs='+', choices=ARMS, default=ARMS, help='default all')
    parser.add_argument('--iters', type=int, help='training iterations per cell (default: the '
                        "configs' max_iters; the schedule is stretched to fit)")
    parser.add_argument('--num-train', type=int, help=f"training strips, a multiple of 3 "
                        f"(default {FULL['num_train']})")
    parser.add_argument('--num-val', type=int, help=f"validation strips, a multiple of 3 "
                        f"(default {FULL['num_val']})")
    parser.add_argument('--width', type=int, help=f"strip width, px (default {FULL['width']})")
    parser.add_argument('--erf-images', type=int, help=f"strips each ERF is averaged over "
                        f"(default {FULL['erf_images']})")
    parser.add_argument('--jobs', type=int, default=1,
                        help='cells trained at once, each in a process of its own sharing the '
                        'threads (default 1; 2 on 2 CPU cores takes about half the time)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                        help='auto: a GPU when there is one (default); cpu hides the GPUs')
    args = parser.parse_args(argv)
    for key, default in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cpu':  # before anything starts CUDA; the cells' processes inherit it
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no GPU here; use --device cpu or auto.')
    from mmengine.config import Config

    from mmambaout.analysis.longrange import (CONFIGS, PLAIN, Recipe, configs_digest, grid, plot,
                                              reaches, run_sweep, summary)
    out = Path(args.out)
    if args.iters is None:
        args.iters = Config.fromfile(CONFIG_DIR / CONFIGS[PLAIN]).max_iters
    recipe = Recipe(args.iters, args.num_train, args.num_val, args.width, args.erf_images,
                    configs_digest(CONFIG_DIR))
    reach = reaches(CONFIG_DIR, args.width)
    for arm, r in sorted(reach.items()):
        print(f'{arm}: a logit sees {r.logit} px to a side of its centre, an output pixel '
              f'{r.pixel[0]}-{r.pixel[1]} px.')
    print(f"Device: {'cuda' if torch.cuda.is_available() else 'cpu'}.", flush=True)

    def report(sweep):
        plot(sweep, reach, out / 'longrange.png')
        (out / 'summary.md').write_text(summary(sweep, reach, args.iters) + '\n')

    sweep = run_sweep(out, CONFIG_DIR, grid(args.arms, args.seeds), recipe, reach, report,
                      args.jobs)
    report(sweep)
    print('\n' + summary(sweep, reach, args.iters))
    print(f'\nWrote {out}/: cells.csv, results.csv, curves.csv, erf.csv, summary.md, '
          'longrange.png')


if __name__ == '__main__':
    main()
