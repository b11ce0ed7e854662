"""The long-range study: does the SSM carry evidence farther than MambaOut's convolutions reach?

Every arm segments the dense long-range toy (``mmambaout.datasets.toy_longrange``: every pixel
but the marker's takes the marker's colour as its class) with a head on the stride-8 features of
MambaOut-femto truncated after stage 1; all but the control have no global path (configs/toy/):

* ``MambaOut``: bounded by its receptive field (an output pixel sees 128–142 px to a side);
* ``MambaOut + SS2D``: its twin, every block's convolved channels also scanned (SS2D);
* ``MambaOut k=1``, ``MambaOut + SS2D k=1``: both with 1×1 "depthwise convolutions": the plain
  one sees ~30 px, so whatever the twin carries farther is the scan's alone;
* ``global pool``: control c, the plain backbone under a head with a global-average-pool branch.

A *cell* is one (arm, seed): its config trained from scratch through mmengine's Runner as
tools/train.py does, with every cell's recipe (:class:`Recipe`). ``LongRangeDistanceAccuracy``
scores the validation strips per 16-px bin of distance to the marker, so one run gives a whole
accuracy-against-distance curve; ``LongRangeErfHook`` measures the effective receptive field at
initialisation and after training. :func:`verdict` applies the written decision rule
(docs/longrange.md) to the finished cells.

A sweep lives in one folder: ``recipe.json``, ``data/`` (the set), ``runs/<cell>/`` (mmengine
work dirs), ``cells.csv`` (a row per finished cell, written last: a cell there is done),
``results.csv`` (a row per cell and distance bin), ``curves.csv`` (training loss, validation
accuracy per bin and iteration), ``erf.csv`` (the ERF mass against distance), ``summary.md``
and ``longrange.png``. Run again, it trains only the cells missing from ``cells.csv``.
"""
import copy
import csv
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, METRICS
from torch import nn

from ..datasets.toy_longrange import (STRIP_HEIGHT, TOY_LONGRANGE_CLASSES,
                                      ensure_toy_longrange_dense, marker_distance,
                                      render_dense_sample)
from ..utils import runtime
from .erf import erf_in_eval_mode, float_to_bgr, output_network, preprocessed, write_erf
from .models import build_model
from .receptive_field import pixel_reach, receptive_field
from .report import markdown_table, write_csv
from .work_dirs import run_dirs

PLAIN, TWIN, PLAIN_K1, TWIN_K1, GLOBAL = ARMS = (
    'MambaOut', 'MambaOut + SS2D', 'MambaOut k=1', 'MambaOut + SS2D k=1', 'global pool')
CONFIGS = {
    PLAIN: 'fcn_mambaout_femto_s8_longrange.py',
    TWIN: 'fcn_mambaout_ss2d_femto_s8_longrange.py',
    PLAIN_K1: 'fcn_mambaout_femto_s8_k1_longrange.py',
    TWIN_K1: 'fcn_mambaout_ss2d_femto_s8_k1_longrange.py',
    GLOBAL: 'fcn_mambaout_femto_s8_pool_longrange.py',
}
PAIRS = ((TWIN, PLAIN), (TWIN_K1, PLAIN_K1))  # (scanning arm, its bounded twin)
# The bounded arm whose reach each arm is measured against (ERF radius, bins "beyond reach").
BOUNDED = {PLAIN: PLAIN, TWIN: PLAIN, PLAIN_K1: PLAIN_K1, TWIN_K1: PLAIN_K1, GLOBAL: PLAIN}
CHANCE = 100 / len(TOY_LONGRANGE_CLASSES)
BIN_WIDTH = 16  # px of distance to the marker per accuracy bin
DATA_SEED = 0  # every cell trains and validates on the same images; seeds vary the training
ERF_WIDTH, ERF_IMAGES = 640, 16  # strips wide enough for the centre to see 320 px to a side

# The decision rule (docs/longrange.md), fixed before any run: accuracies in %.
SUCCESS = 90.  # a seed succeeds at a bin with at least this accuracy
LEARNED = 95.  # controls a and c: the task is learnt
AT_CHANCE = 38.  # control b and refutation: at most this is chance (chance 33.3)
CONTROL_BINS = (32, 64)  # control a: bins inside the plain arm's reach
MIN_SEEDS_SHARE = 4 / 5  # controls a, c, d and confirmation: at least this share of the seeds
ERF_SHARE = 0.01  # confirmation: the trained ERF's mass beyond the reach, at least
BUDGET_RATIO = 3  # refutation: the global control learnt within 1/3 of the iterations

CELL_HEADER = ['arm', 'seed', 'iters', 'seconds', 'cpu seconds', 's/iter', 'device',
               'erf radius', 'erf beyond, init', 'erf beyond, trained']
RESULT_HEADER = ['arm', 'seed', 'iters', 'distance', 'pixels', 'accuracy', 'all colours']
CURVE_HEADER = ['arm', 'seed', 'iter', 'loss', 'train acc', 'distance', 'val accuracy']
ERF_HEADER = ['arm', 'seed', 'when', 'distance', 'mass share']


# ---------------------------------------------------------------- metric and hook

@METRICS.register_module()
class LongRangeDistanceAccuracy(BaseMetric):
    """Pixel accuracy per bin of Chebyshev distance to the marker on a dense long-range set:
    ``acc_DDD`` for the bin starting at DDD px, and ``all3_DDD``, the share of the bin's pixels
    predicted right in all three colourings of their scene (the recolouring control: the
    prediction follows the marker). The marker is the only ignored pixel of the ground truth."""

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            prediction = sample['pred_sem_seg']['data'].squeeze(0).cpu().numpy()
            truth = sample['gt_sem_seg']['data'].squeeze(0).cpu().numpy()
            marker = truth == 255
            if not marker.any():
                raise ValueError(f"{sample['img_path']}: no marker (ignored pixels) in its "
                                 'labels: LongRangeDistanceAccuracy scores dense long-range '
                                 'sets (make_toy_longrange_dense).')
            scene = (int(Path(sample['img_path']).stem) - 1) // len(TOY_LONGRANGE_CLASSES)
            self.results.append((scene, (marker_distance(marker)[~marker] // BIN_WIDTH),
                                 prediction[~marker] == truth[~marker]))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        bins = max(int(bins.max()) for _, bins, _ in results) + 1
        pixels = sum(np.bincount(b, minlength=bins) for _, b, _ in results)
        right = sum(np.bincount(b, c, minlength=bins) for _, b, c in results)
        scenes: Dict[int, list] = {}
        for scene, b, correct in results:
            scenes.setdefault(scene, []).append((b, correct))
        all3_pixels, all3_right = np.zeros(bins), np.zeros(bins)
        for colourings in scenes.values():
            if len(colourings) == len(TOY_LONGRANGE_CLASSES):  # whole scenes only
                b = colourings[0][0]
                all3_pixels += np.bincount(b, minlength=bins)
                all3_right += np.bincount(b, np.logical_and.reduce([c for _, c in colourings]),
                                          minlength=bins)
        metrics = {}
        for index in np.flatnonzero(pixels):
            start = index * BIN_WIDTH
            metrics[f'acc_{start:03d}'] = 100 * right[index] / pixels[index]
            metrics[f'pixels_{start:03d}'] = int(pixels[index])
            if all3_pixels[index]:
                metrics[f'all3_{start:03d}'] = 100 * all3_right[index] / all3_pixels[index]
        return metrics


def unwrapped(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class LongRangeErfHook(Hook):
    """The effective receptive field of the segmentor's logits (mmambaout.analysis.erf) on
    dense long-range strips ``width`` px wide, before and after training: ``erf_init/`` and
    ``erf_trained/`` in the work dir (map, mass against distance, share beyond ``radius``)."""
    priority = 'LOWEST'

    def __init__(self, radius: int, width: int = ERF_WIDTH, num_images: int = ERF_IMAGES):
        self.radius, self.width, self.num_images = radius, width, num_images

    def measure(self, runner, when: str) -> None:
        model = unwrapped(runner.model)
        images = [float_to_bgr(render_dense_sample(DATA_SEED, 'val', index, self.width)[0])
                  for index in range(self.num_images)]
        device = next(model.parameters()).device
        erf = erf_in_eval_mode(model, output_network(model, 'head'),
                               preprocessed(model, images, 4, device))
        out = Path(runner.work_dir) / f'erf_{when}'
        summary = write_erf(erf, out, f'{runner.experiment_name}, {when}', self.radius)
        (out / 'erf.json').write_text(json.dumps(summary))

    def before_train(self, runner) -> None:
        self.measure(runner, 'init')

    def after_train(self, runner) -> None:
        self.measure(runner, 'trained')


# ---------------------------------------------------------------- one cell

@dataclass(frozen=True)
class Recipe:
    """What every cell of a sweep shares: iterations, set sizes, strip width, the number of
    strips its ERFs are averaged over, and the arms' config files (a digest of their text: the
    recipe's optimiser and schedule live there)."""
    iters: int
    num_train: int
    num_val: int
    width: int
    erf_images: int
    configs: str


def configs_digest(config_dir: Path) -> str:
    """SHA-1 of the arms' config files, in ``ARMS`` order."""
    digest = hashlib.sha1()
    for arm in ARMS:
        digest.update((Path(config_dir) / CONFIGS[arm]).read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Cell:
    arm: str
    seed: int

    @property
    def name(self) -> str:
        slug = self.arm.lower().replace(' + ', '_').replace('=', '').replace(' ', '_')
        return f'{slug}_s{self.seed}'

    def key(self) -> Tuple[str, int]:
        return self.arm, self.seed


def grid(arms: Sequence[str], seeds: Sequence[int]) -> List[Cell]:
    """Every cell, seed by seed: a sweep cut short holds whole seeds."""
    return [Cell(arm, seed) for seed in seeds for arm in arms]


def rescale_schedule(cfg: Config, iters: int) -> None:
    """Stretch the config's schedule (scheduler milestones, validation, log and checkpoint
    intervals) to ``iters`` iterations, keeping its shape."""
    factor = iters / cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = max(1, round(cfg.train_cfg.val_interval * factor))
    cfg.default_hooks.logger.interval = max(1, round(cfg.default_hooks.logger.interval * factor))
    cfg.default_hooks.checkpoint.interval = iters
    for scheduler in cfg.param_scheduler:
        scheduler.begin = round(scheduler.begin * factor)
        scheduler.end = max(scheduler.begin + 1, round(scheduler.end * factor))  # not empty


@functools.lru_cache(maxsize=None)
def loaded_config(config: Path) -> Config:
    """The config as tools/train.py loads it, read once per sweep: resolving its ``mmseg::``
    bases reads mmseg's ~400 metafiles, seconds per cell otherwise."""
    return runtime.load_config(str(config))


def cell_config(config: Path, cell: Cell, recipe: Recipe, data_root: Path, work_dir: Path,
                erf_radius: int) -> Config:
    """The config of a cell's training run, as tools/train.py would run it, plus the ERF hook."""
    cfg = copy.deepcopy(loaded_config(config))
    cfg.work_dir = str(work_dir)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.model.data_preprocessor.size = (STRIP_HEIGHT, recipe.width)
    rescale_schedule(cfg, recipe.iters)
    cfg.randomness = dict(seed=cell.seed)
    cfg.log_level = 'WARNING'  # the sweep reports progress itself; the logs keep every record
    # mmengine keeps one logger and one visualizer per name in the process: one per cell
    cfg.experiment_name = cfg.visualizer.name = cell.name
    cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                        dict(type='LongRangeErfHook', radius=erf_radius,
                             num_images=recipe.erf_images)]
    runtime.configure_training(cfg)
    return cfg


def read_scalars(work_dir: Path) -> List[dict]:
    """The records of the work dir's run (mmengine's ``vis_data/scalars.json``)."""
    path = run_dirs(work_dir)[-1] / 'vis_data' / 'scalars.json'
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def binned(record: dict, prefix: str) -> Dict[int, float]:
    """``{bin start: value}`` of a validation record's ``<prefix>_DDD`` keys."""
    return {int(key[len(prefix) + 1:]): value for key, value in record.items()
            if key.startswith(prefix + '_')}


def train_cell(config: Path, cell: Cell, recipe: Recipe, data_root: Path, work_dir: Path,
               erf_radius: int) -> Tuple[dict, List[dict], List[dict], List[dict]]:
    """Train one cell from scratch: its cell row, result rows, curve rows and ERF rows."""
    shutil.rmtree(work_dir, ignore_errors=True)  # what an interrupted attempt left
    start, cpu_start = time.perf_counter(), time.process_time()
    runtime.run(cell_config(config, cell, recipe, data_root, work_dir, erf_radius), 'train')
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    records = read_scalars(work_dir)
    train = [r for r in records if 'loss' in r]
    val = [r for r in records if any(key.startswith('acc_') for key in r)]
    if not val or val[-1]['step'] != recipe.iters:
        raise RuntimeError(f'{work_dir}: no validation after the last iteration in the logs.')
    ids = dict(arm=cell.arm, seed=cell.seed)
    final, pixels, all3 = (binned(val[-1], prefix) for prefix in ('acc', 'pixels', 'all3'))
    results = [{**ids, 'iters': recipe.iters, 'distance': d, 'pixels': pixels[d],
                'accuracy': round(final[d], 2), 'all colours': round(all3.get(d, math.nan), 2)}
               for d in sorted(final)]
    curves = ([{**ids, 'iter': r['step'], 'loss': r['loss'], 'train acc': r['decode.acc_seg']}
               for r in train]
              + [{**ids, 'iter': r['step'], 'distance': d, 'val accuracy': round(a, 2)}
                 for r in val for d, a in sorted(binned(r, 'acc').items())])
    erf, shares = [], {}
    for when in ('init', 'trained'):
        folder = work_dir / f'erf_{when}'
        shares[when] = json.loads((folder / 'erf.json').read_text())['share beyond radius']
        erf += [{**ids, 'when': when, 'distance': r['distance'], 'mass share': r['mass share']}
                for r in read_rows(folder / 'erf.csv')]
    row = {**ids, 'iters': recipe.iters, 'seconds': round(seconds, 1),
           'cpu seconds': round(cpu_seconds, 1),
           's/iter': round(statistics.median(r['time'] for r in train), 4),
           'device': 'cuda' if torch.cuda.is_available() else 'cpu', 'erf radius': erf_radius,
           'erf beyond, init': f"{shares['init']:.3g}",
           'erf beyond, trained': f"{shares['trained']:.3g}"}
    return row, results, curves, erf


# ---------------------------------------------------------------- the sweep

def read_rows(path: Path) -> List[dict]:
    if not path.is_file():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, header: Sequence[str], rows: Iterable[dict]) -> None:
    """Write the rows whole or not at all: a sweep stopped while writing keeps its last file."""
    partial = path.with_suffix('.partial')
    write_csv(partial, header, [[row.get(column, '') for column in header] for row in rows])
    os.replace(partial, path)


def row_key(row: dict) -> Tuple[str, int]:
    return row['arm'], int(row['seed'])


def check_recipe(out: Path, recipe: Recipe) -> None:
    """Write the sweep's recipe, or refuse one that differs from the folder's."""
    path = out / 'recipe.json'
    if path.is_file():
        found = json.loads(path.read_text())
        if found != asdict(recipe):
            raise ValueError(f'{out} holds a sweep with recipe {found}, not {asdict(recipe)}: '
                             'repeat its settings to extend or resume it, or choose another '
                             '--out.')
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(recipe)))


@dataclass(frozen=True)
class Reach:
    """How far a bounded arm sees to one side: a logit from its centre pixel (the window's half,
    the ERF radius beyond which its mass is 0), an output pixel (least, most) once the logits are
    upsampled (the accuracy bins beyond ``pixel[1]`` are out of its sight)."""
    logit: int
    pixel: Tuple[int, int]


def bounded_reach(config: Path, width: int) -> Reach:
    """The reach of a bounded arm's logits along the strip, from the config's real model."""
    model = build_model(loaded_config(config))
    network = nn.Sequential(model.backbone, model.decode_head).eval()
    window = receptive_field(network, torch.zeros(1, 3, STRIP_HEIGHT, width))
    return Reach((window.size - 1) // 2, pixel_reach(window))


def reaches(config_dir: Path, width: int) -> Dict[str, Reach]:
    return {arm: bounded_reach(config_dir / CONFIGS[arm], width) for arm in set(BOUNDED.values())}


@dataclass
class Sweep:
    """What a sweep folder holds, as rows of its CSV files."""
    cells: List[dict]
    results: List[dict]
    curves: List[dict]
    erf: List[dict]

    FILES = (('cells', CELL_HEADER), ('results', RESULT_HEADER), ('curves', CURVE_HEADER),
             ('erf', ERF_HEADER))

    @classmethod
    def read(cls, out: Path) -> 'Sweep':
        return cls(*(read_rows(out / f'{name}.csv') for name, _ in cls.FILES))

    def add(self, out: Path, cell: Cell, row: dict, *rows: List[dict]) -> None:
        """Replace the cell's rows and write every file, ``cells.csv`` last: then it is done."""
        for (name, _), new in zip(self.FILES[1:], rows):
            setattr(self, name, [r for r in getattr(self, name) if row_key(r) != cell.key()]
                    + new)
        self.cells.append(row)
        for name, header in (*self.FILES[1:], self.FILES[0]):
            write_rows(out / f'{name}.csv', header, getattr(self, name))


def trained_cells(tasks: Sequence[Tuple[Cell, tuple]], jobs: int):
    """``(cell, train_cell's rows)`` of each ``(cell, train_cell arguments)`` as it finishes:
    in this process, or in ``jobs`` processes of their own sharing this one's threads."""
    if jobs == 1:
        for cell, arguments in tasks:
            yield cell, train_cell(*arguments)
        return
    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context('spawn'),
                             initializer=torch.set_num_threads, initargs=(threads, )) as pool:
        futures = {pool.submit(train_cell, *arguments): cell for cell, arguments in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def run_sweep(out: Path, config_dir: Path, cells: Sequence[Cell], recipe: Recipe,
              reach: Dict[str, Reach], on_update: Callable[[Sweep], None],
              jobs: int = 1) -> Sweep:
    """Train every cell not yet in ``out/cells.csv`` (``jobs`` at a time), writing each as it
    finishes, and call ``on_update(sweep)`` after each; returns the whole sweep."""
    if jobs < 1:
        raise ValueError(f'jobs must be at least 1, got {jobs}')
    out = Path(out)
    check_recipe(out, recipe)
    sweep = Sweep.read(out)
    done = {row_key(row) for row in sweep.cells}
    todo = [cell for cell in cells if cell.key() not in done]
    print(f'{len(cells)} cells: {len(cells) - len(todo)} done in {out / "cells.csv"}, '
          f'{len(todo)} to train ({recipe.iters} iterations each, {jobs} at a time).', flush=True)
    data_root = ensure_toy_longrange_dense(out / 'data', num_train=recipe.num_train,
                                           num_val=recipe.num_val, seed=DATA_SEED,
                                           width=recipe.width)
    tasks = [(cell, (config_dir / CONFIGS[cell.arm], cell, recipe, data_root,
                     out / 'runs' / cell.name, reach[BOUNDED[cell.arm]].logit))
             for cell in todo]
    started = time.perf_counter()
    for number, (cell, (row, *rows)) in enumerate(trained_cells(tasks, jobs), 1):
        sweep.add(out, cell, row, *rows)
        accuracy = {int(r['distance']): float(r['accuracy']) for r in rows[0]}
        shown = ', '.join(f'{d} px {accuracy[d]:.0f}' for d in (32, 64, 144, 192, 272)
                          if d in accuracy)
        elapsed = time.perf_counter() - started
        print(f'[{number}/{len(todo)}] {cell.arm}, seed {cell.seed}: accuracy % at {shown}; '
              f'{row["seconds"]:.0f} s ({row["s/iter"]:.3f} s/iter); about '
              f'{elapsed / number * (len(todo) - number) / 60:.0f} min left', flush=True)
        on_update(sweep)
    return sweep


# ---------------------------------------------------------------- controls and verdict

Table = Dict[str, Dict[int, Dict[int, float]]]  # arm → seed → bin → accuracy


def by_arm(results: Sequence[dict], column: str = 'accuracy') -> Table:
    table: Table = {}
    for row in results:
        value = row[column]
        if value not in ('', 'nan'):
            table.setdefault(row['arm'], {}).setdefault(int(row['seed']), {})[
                int(row['distance'])] = float(value)
    return table


def beyond(reach: Reach, bins: Iterable[int]) -> List[int]:
    """The bins whose every pixel is farther than any output pixel of the arm sees."""
    return sorted(d for d in bins if d > reach.pixel[1])


def enough(count: int, seeds: int) -> bool:
    return seeds > 0 and count >= math.ceil(MIN_SEEDS_SHARE * seeds - 1e-9)


def first_learnt(curves: Sequence[dict], arm: str) -> Dict[int, Optional[int]]:
    """Per seed, the first validated iteration at which ``arm`` is at LEARNED or more at every
    bin (None if never)."""
    steps: Dict[int, Dict[int, List[float]]] = {}
    for row in curves:
        if row['arm'] == arm and row.get('val accuracy') not in (None, ''):
            steps.setdefault(int(row['seed']), {}).setdefault(int(row['iter']), []).append(
                float(row['val accuracy']))
    return {seed: next((step for step in sorted(by_step) if min(by_step[step]) >= LEARNED),
                       None) for seed, by_step in steps.items()}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def controls(sweep: Sweep, reach: Dict[str, Reach]) -> List[Check]:
    """Controls a–d of the decision rule, each with its seeds."""
    accuracy, all3 = by_arm(sweep.results), by_arm(sweep.results, 'all colours')
    at = f'at {", ".join(map(str, CONTROL_BINS))} px'

    def inside(by_bin):
        return [d for d in CONTROL_BINS if d in by_bin]

    def check(name, table, arm, bins, test, rule, every_seed=False):
        """Whether ``test`` holds at all ``bins(accuracy by bin)`` on enough seeds of ``arm``
        (on every seed if ``every_seed``)."""
        seeds = table.get(arm, {})
        passing = [s for s, by_bin in sorted(seeds.items())
                   if bins(by_bin) and all(test(by_bin[d]) for d in bins(by_bin))]
        passed = (bool(seeds) and len(passing) == len(seeds) if every_seed else
                  enough(len(passing), len(seeds)))
        return Check(name, passed, f'{rule} on seeds {passing} of {sorted(seeds)}' if seeds
                     else f'not run ({arm})')

    return [
        check('a. MambaOut learns inside its reach', accuracy, PLAIN, inside,
              lambda a: a >= LEARNED, f'>= {LEARNED:g} % {at}'),
        *(check(f'b. {arm} at chance beyond its reach ({reach[arm].pixel[1]} px)', accuracy,
                arm, functools.partial(beyond, reach[arm]), lambda a: a <= AT_CHANCE,
                f'<= {AT_CHANCE:g} % at every bin beyond', every_seed=True)
          for arm in (PLAIN, PLAIN_K1)),
        check('c. the global-pool control learns at every distance', accuracy, GLOBAL, list,
              lambda a: a >= LEARNED, f'>= {LEARNED:g} % at every bin'),
        check('d. MambaOut follows the marker', all3, PLAIN, inside, lambda a: a >= SUCCESS,
              f'>= {SUCCESS:g} % right in all three colourings {at} (blanking the marker '
              'leaves no evidence of the class: the colourings share every other pixel)'),
    ]


def fisher_greater(successes: Tuple[int, int], seeds: Tuple[int, int]) -> float:
    """One-sided Fisher exact test: the probability of the first arm's successes or more if
    both arms succeeded alike, all margins fixed."""
    from scipy.stats import fisher_exact
    (a, c), (n1, n2) = successes, seeds
    return float(fisher_exact([[a, n1 - a], [c, n2 - c]], alternative='greater')[1])


def success_counts(sweep: Sweep) -> Dict[str, Dict[int, Tuple[int, int]]]:
    """arm → bin → (seeds at SUCCESS or more, seeds)."""
    counts: Dict[str, Dict[int, Tuple[int, int]]] = {}
    for arm, seeds in by_arm(sweep.results).items():
        for by_bin in seeds.values():
            for d, a in by_bin.items():
                won, total = counts.setdefault(arm, {}).get(d, (0, 0))
                counts[arm][d] = (won + (a >= SUCCESS), total + 1)
    return counts


def verdict(sweep: Sweep, reach: Dict[str, Reach], iters: int) -> List[str]:
    """The decision rule (docs/longrange.md), for the k=7 and the k=1 pair: one line each."""
    checks = controls(sweep, reach)
    failed = [check.name for check in checks if not check.passed]
    if failed:
        return [f'Inconclusive: controls failed: {"; ".join(failed)}.']
    accuracy, counts = by_arm(sweep.results), success_counts(sweep)
    erf = {row_key(row): float(row['erf beyond, trained']) for row in sweep.cells}
    learnt = [step for step in first_learnt(sweep.curves, GLOBAL).values() if step]
    global_budget = statistics.median(learnt) if learnt else math.inf
    lines = []
    for scanning, bounded in PAIRS:
        edge, seeds = reach[bounded].pixel[1], accuracy.get(scanning, {})
        far = beyond(reach[bounded], counts.get(scanning, {}))
        if not far:
            lines.append(f'{scanning}: inconclusive: not run beyond {edge} px.')
            continue
        with_erf = [s for s in seeds if erf.get((scanning, s), 0) >= ERF_SHARE]
        won = [d for d in far if enough(sum(seeds[s].get(d, 0) >= SUCCESS for s in with_erf),
                                        len(seeds))]
        if won:
            lines.append(f'{scanning}: confirmed: the scan carries the evidence beyond the '
                         f'convolutions\' reach ({edge} px), at {won[0]}–{won[-1]} px (>= '
                         f'{SUCCESS:g} % and ERF mass >= {ERF_SHARE:g} beyond the reach on >= 4/5 '
                         'of the seeds).')
        elif (all(seeds[s][d] <= AT_CHANCE for s in seeds for d in far if d in seeds[s])
              and iters >= BUDGET_RATIO * global_budget):
            lines.append(f'{scanning}: refuted for this block and recipe: at chance beyond '
                         f'{edge} px on every seed after {iters} iterations, '
                         f'{iters / global_budget:.1f}x what the global control needed.')
        else:
            learnt_by = 'never' if math.isinf(global_budget) else f'by {global_budget:g}'
            lines.append(f'{scanning}: inconclusive: neither >= {SUCCESS:g} % beyond {edge} px '
                         'on >= 4/5 of the seeds with ERF mass there, nor at chance on every '
                         f'seed at {BUDGET_RATIO}x the iterations the global control needed '
                         f'(it learnt {learnt_by} of {iters}).')
    return lines


# ---------------------------------------------------------------- summaries

TABLE_BINS = (16, 32, 64, 96, 128, 144, 160, 192, 224, 256, 272)


def summary(sweep: Sweep, reach: Dict[str, Reach], iters: int) -> str:
    """Markdown: controls first, then accuracy and success counts per arm and bin, Fisher's
    test for each scanning arm against its bounded twin, and the verdict."""
    accuracy, counts = by_arm(sweep.results), success_counts(sweep)
    bins = [d for d in TABLE_BINS if any(d in c for c in counts.values())]
    lines = ['Controls:', '']
    lines += [f'- {"PASS" if c.passed else "FAIL"} {c.name}: {c.detail}'
              for c in controls(sweep, reach)]
    rows = []
    for arm in ARMS:
        if arm not in accuracy:
            continue
        cells = []
        for d in bins:
            values = [by_bin[d] for by_bin in accuracy[arm].values() if d in by_bin]
            won, total = counts[arm].get(d, (0, 0))
            cells.append(f'{statistics.mean(values):.1f} ({min(values):.0f}–{max(values):.0f}) '
                         f'{won}/{total}' if values else '–')
        rows.append([arm, len(accuracy[arm]), *cells])
    lines += ['', f'Accuracy % per bin of distance to the marker (bins of {BIN_WIDTH} px from '
              f'the one named): mean (min–max over seeds), seeds >= {SUCCESS:g} %; chance '
              f'{CHANCE:.1f}:', '',
              markdown_table(['arm', 'seeds', *(f'{d} px' for d in bins)], rows)]
    fisher_rows = []
    for scanning, bounded in PAIRS:
        for d in bins:
            if d in counts.get(scanning, {}) and d in counts.get(bounded, {}):
                (a, n1), (c, n2) = counts[scanning][d], counts[bounded][d]
                fisher_rows.append([f'{scanning} vs {bounded}', d, f'{a}/{n1}', f'{c}/{n2}',
                                    f'{fisher_greater((a, c), (n1, n2)):.3g}'])
    if fisher_rows:
        lines += ['', "Fisher's exact test, one-sided (the scanning arm succeeds more often):",
                  '', markdown_table(['pair', 'px', 'scanning', 'bounded', 'p'], fisher_rows)]
    lines += ['', 'Verdict:', '', *(f'- {line}' for line in verdict(sweep, reach, iters))]
    return '\n'.join(lines)


def plot(sweep: Sweep, reach: Dict[str, Reach], path: Path) -> None:
    """Top: accuracy against distance per arm (mean line, the seeds' spread as a band), each
    bounded arm's reach marked. Bottom left: validation accuracy (mean over bins) against
    iteration. Bottom right: ERF mass against distance, at initialisation and trained."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colors = dict(zip(ARMS, ('tab:blue', 'tab:orange', 'tab:cyan', 'tab:red', 'tab:green')))
    fig = plt.figure(figsize=(12, 9))
    grid_spec = fig.add_gridspec(2, 2, height_ratios=[3, 2])
    top = fig.add_subplot(grid_spec[0, :])
    for arm, style in ((PLAIN, '--'), (PLAIN_K1, ':')):
        if arm in reach:
            least, most = reach[arm].pixel
            top.axvline(most, color=colors[arm], linestyle=style,
                        label=f'{arm}: an output pixel sees {least}–{most} px')
    top.axhline(CHANCE, color='black', linewidth=1, linestyle=':', label='chance')
    for arm, seeds in sorted(by_arm(sweep.results).items(), key=lambda kv: ARMS.index(kv[0])):
        xs = sorted({d for by_bin in seeds.values() for d in by_bin})
        values = [[by_bin[d] for by_bin in seeds.values() if d in by_bin] for d in xs]
        centres = [d + BIN_WIDTH / 2 for d in xs]
        top.plot(centres, [statistics.mean(v) for v in values], '-o', markersize=3,
                 color=colors[arm], label=f"{arm} ({len(seeds)} seed{'s'[:len(seeds) > 1]})")
        top.fill_between(centres, [min(v) for v in values], [max(v) for v in values],
                         color=colors[arm], alpha=0.15)
    top.set_xlabel('distance to the marker (px of the model input; bin centres)')
    top.set_ylabel('pixel accuracy (%)')
    top.set_ylim(0, 102)
    top.legend(fontsize=8, loc='lower left')
    top.set_title('Long-range toy: accuracy against distance (band: spread over seeds)')

    learning = fig.add_subplot(grid_spec[1, 0])
    edge = reach[PLAIN].pixel[1] if PLAIN in reach else math.inf
    steps: Dict[Tuple[str, int, bool], Dict[int, List[float]]] = {}
    for row in sweep.curves:
        if row.get('val accuracy') not in (None, ''):
            far = int(row['distance']) > edge
            steps.setdefault((*row_key(row), far), {}).setdefault(int(row['iter']), []).append(
                float(row['val accuracy']))
    for (arm, _, far), by_step in steps.items():
        xs = sorted(by_step)
        learning.plot(xs, [statistics.mean(by_step[x]) for x in xs], ':' if far else '-',
                      color=colors[arm], alpha=0.6, linewidth=1)
    learning.axhline(CHANCE, color='black', linewidth=1, linestyle=':')
    learning.set_xlabel('iteration')
    learning.set_ylabel(f'val accuracy (%), mean over bins\n<= {edge} px (solid), beyond (dotted)')
    learning.set_ylim(0, 102)

    erf = fig.add_subplot(grid_spec[1, 1])
    masses: Dict[Tuple[str, str], Dict[int, List[float]]] = {}
    for row in sweep.erf:
        masses.setdefault((row['arm'], row['when']), {}).setdefault(
            int(row['distance']), []).append(float(row['mass share']))
    for (arm, when), by_distance in masses.items():
        xs = sorted(by_distance)
        erf.semilogy(xs, [max(statistics.mean(by_distance[x]), 1e-12) for x in xs],
                     '--' if when == 'init' else '-', color=colors[arm], linewidth=1)
    erf.set_xlabel('distance from the centre pixel (px)')
    erf.set_ylabel('ERF mass share (dashed: init, solid: trained)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
