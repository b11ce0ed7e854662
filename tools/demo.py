"""The demos: train a model from scratch on an embedded toy set, test it, show where it all is.

    python tools/demo.py det          # Mask R-CNN + MambaOut-femto on the toy COCO set
    python tools/demo.py seg          # UperNet + MambaOut-femto on the toy ADE20K set

Generates the toy set if it is missing, then runs tools/train.py and tools/test.py --show-dir as
a user would, and prints where the log, checkpoint, metrics and drawn predictions are.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from mmambaout.datasets import ensure_toy_ade, ensure_toy_coco

REPO = Path(__file__).resolve().parents[1]
# task: (config, toy-set generator, the config's data_root, where --show-dir puts the pictures)
DEMOS = {
    'det': ('configs/toy/mask_rcnn_mambaout_femto_toy.py', ensure_toy_coco, 'data/toy_coco',
            '*/predictions'),
    'seg': ('configs/toy/upernet_mambaout_femto_toy.py', ensure_toy_ade, 'data/toy_ade',
            'predictions/vis_data/vis_image'),
}


def newest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda path: path.stat().st_mtime)


def run(*args: str):
    print('+', ' '.join(args), flush=True)
    subprocess.run([sys.executable, '-u', *args], cwd=REPO, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('task', choices=sorted(DEMOS))
    parser.add_argument('--work-dir', help='outputs go here (default work_dirs/demo_TASK)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed on to tools/train.py and tools/test.py')
    args = parser.parse_args()
    config, ensure_toy_set, data_root, pictures = DEMOS[args.task]
    work_dir = Path(args.work_dir or f'work_dirs/demo_{args.task}').resolve()
    options = ['--cfg-options', *args.cfg_options] if args.cfg_options else []

    ensure_toy_set(REPO / data_root)
    run('tools/train.py', config, '--work-dir', str(work_dir), *options)
    train_log = newest(work_dir, '*/*.log')  # mmengine: WORK_DIR/<timestamp>/<timestamp>.log
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()  # written by mmengine
    # tested in its own work dir: the checkpoint is then trusted to unpickle (torch >= 2.6)
    run('tools/test.py', config, checkpoint, '--work-dir', str(work_dir),
        '--show-dir', 'predictions', *options)

    metrics_file = newest(work_dir, '*/*.json')
    metrics = json.loads(metrics_file.read_text())
    print(f'\nLogs:          {train_log} (training)\n'
          f'               {newest(work_dir, "*/*.log")} (test)\n'
          f'Checkpoint:    {checkpoint}\n'
          f'Test metrics:  {metrics_file}\n'
          f'               {metrics}\n'
          f'Predictions:   {newest(work_dir, pictures)}/')


if __name__ == '__main__':
    main()
