"""The long-range sweep: accuracy on the long-range toy against the marker–target distance,
for MambaOut and its SS2D twin, with and without a global path.

A *cell* is one (setting, model, distance, seed); each trains its config from scratch through
mmengine's Runner as tools/train.py does (``mmambaout.utils.runtime``) and is scored by mmseg's
IoUMetric on the validation strips. Only target pixels are labelled, so ``aAcc`` is the target's
pixel accuracy (chance 33 %). Settings (configs in configs/toy/):

* ``global``: (a) UperNet on all four stages: pyramid pooling and low-resolution stages, global
  paths that need no long-range mixing at high resolution;
* ``local``: (b) an FCN head on the stride-8 features of MambaOut truncated after stage 1: no
  global path, so plain MambaOut is bounded by its receptive field.

Models: MambaOut-femto and its SS2D twin (``token_mixer='gated_cnn_ss2d'``), identical but for
the token mixer; every cell shares the data, the schedule and the recipe (:class:`Recipe`).

A sweep lives in one folder: ``recipe.json``, ``data/d<distance>/`` (one set per distance),
``runs/<cell>/`` (mmengine work dirs), ``results.csv`` (a row per finished cell, written as
it finishes), ``curves.csv`` (training loss and accuracy, validation accuracy per iteration)
and ``longrange.png``. Run again, it skips the cells in ``results.csv``. ``jobs`` trains that
many cells at once, each in a process of its own.
"""
import copy
import csv
import functools
import json
import multiprocessing
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch
from mmengine.config import Config
from torch import nn

from ..datasets.toy_longrange import STRIP_HEIGHT, TOY_LONGRANGE_CLASSES, ensure_toy_longrange
from ..utils import runtime
from .models import build_model
from .receptive_field import Window, pixel_reach, receptive_field
from .report import markdown_table, write_csv
from .work_dirs import run_dirs

SETTINGS = {'global': '(a) UperNet, global paths', 'local': '(b) FCN on stride 8, no global path'}
MODELS = ('MambaOut', 'MambaOut + SS2D')
CONFIGS = {
    ('global', 'MambaOut'): 'upernet_mambaout_femto_longrange.py',
    ('global', 'MambaOut + SS2D'): 'upernet_mambaout_ss2d_femto_longrange.py',
    ('local', 'MambaOut'): 'fcn_mambaout_femto_s8_longrange.py',
    ('local', 'MambaOut + SS2D'): 'fcn_mambaout_ss2d_femto_s8_longrange.py',
}
CHANCE = 100 / len(TOY_LONGRANGE_CLASSES)
DATA_SEED = 0  # every cell trains and validates on the same images; seeds vary the training
# seconds: wall clock of the cell; cpu seconds: this process's CPU time (on a machine shared
# with other jobs, the wall time an idle one would take with one thread)
RESULT_HEADER = ['setting', 'model', 'distance', 'seed', 'iters', 'aAcc', 'mIoU', 'mAcc',
                 'seconds', 'cpu seconds', 's/iter']
CURVE_HEADER = ['setting', 'model', 'distance', 'seed', 'iter', 'loss', 'train acc', 'val aAcc']


@dataclass(frozen=True)
class Recipe:
    """What every cell of a sweep shares: iterations, set sizes, strip width."""
    iters: int
    num_train: int
    num_val: int
    width: int


@dataclass(frozen=True)
class Cell:
    setting: str
    model: str
    distance: int
    seed: int

    @property
    def name(self) -> str:
        model = self.model.lower().replace(' + ', '_')
        return f'{self.setting}_{model}_d{self.distance:03d}_s{self.seed}'

    def key(self) -> Tuple[str, str, int, int]:
        return self.setting, self.model, self.distance, self.seed


def grid(distances: Sequence[int], seeds: Sequence[int], settings: Sequence[str] = SETTINGS,
         models: Sequence[str] = MODELS) -> List[Cell]:
    """Every cell, the cheap ones first within a seed: the local setting, then the global."""
    return [Cell(setting, model, distance, seed) for seed in seeds
            for setting in sorted(settings, reverse=True) for model in models
            for distance in distances]


# ---------------------------------------------------------------- one cell

def rescale_schedule(cfg: Config, iters: int) -> None:
    """Stretch the config's schedule (scheduler milestones, validation and log intervals) to
    ``iters`` iterations, keeping its shape."""
    factor = iters / cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = max(1, round(cfg.train_cfg.val_interval * factor))
    cfg.default_hooks.logger.interval = max(1, round(cfg.default_hooks.logger.interval * factor))
    for scheduler in cfg.param_scheduler:
        scheduler.begin, scheduler.end = (round(scheduler[k] * factor) for k in ('begin', 'end'))


@functools.lru_cache(maxsize=None)
def loaded_config(config: Path) -> Config:
    """The config as tools/train.py loads it, read once per sweep: resolving its ``mmseg::``
    bases reads mmseg's ~400 metafiles, seconds per cell otherwise."""
    return runtime.load_config(str(config))


def cell_config(config: Path, cell: Cell, recipe: Recipe, data_root: Path,
                work_dir: Path) -> Config:
    """The config of a cell's training run, as tools/train.py would run it."""
    cfg = copy.deepcopy(loaded_config(config))
    cfg.work_dir = str(work_dir)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.model.data_preprocessor.size = (STRIP_HEIGHT, recipe.width)
    rescale_schedule(cfg, recipe.iters)
    cfg.randomness = dict(seed=cell.seed)
    cfg.default_hooks.checkpoint = None  # results come from the logs; 48 checkpoints are waste
    cfg.log_level = 'WARNING'  # the sweep reports progress itself; the logs keep every record
    # mmengine keeps one logger and one visualizer per name in the process: one per cell
    cfg.experiment_name = cfg.visualizer.name = cell.name
    runtime.configure_training(cfg)
    return cfg


def read_scalars(work_dir: Path) -> List[dict]:
    """The records of the work dir's run (mmengine's ``vis_data/scalars.json``)."""
    path = run_dirs(work_dir)[-1] / 'vis_data' / 'scalars.json'
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_cell(config: Path, cell: Cell, recipe: Recipe, data_root: Path,
               work_dir: Path) -> Tuple[dict, List[dict]]:
    """Train one cell from scratch: its result row and its learning-curve rows."""
    shutil.rmtree(work_dir, ignore_errors=True)  # what an interrupted attempt left
    start, cpu_start = time.perf_counter(), time.process_time()
    runtime.run(cell_config(config, cell, recipe, data_root, work_dir), 'train')
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    records = read_scalars(work_dir)
    train = [r for r in records if 'loss' in r]
    val = [r for r in records if 'aAcc' in r]
    if not val or val[-1]['step'] != recipe.iters:
        raise RuntimeError(f'{work_dir}: no validation after the last iteration in the logs.')
    cell_columns = dict(setting=cell.setting, model=cell.model, distance=cell.distance,
                        seed=cell.seed)
    result = dict(**cell_columns, iters=recipe.iters, **{k: round(val[-1][k], 2) for k in
                                                         ('aAcc', 'mIoU', 'mAcc')},
                  seconds=round(seconds, 1), **{'cpu seconds': round(cpu_seconds, 1)},
                  **{'s/iter': round(statistics.median(r['time'] for r in train), 4)})
    curve = ([dict(**cell_columns, iter=r['step'], loss=r['loss'],
                   **{'train acc': r['decode.acc_seg']}) for r in train]
             + [dict(**cell_columns, iter=r['step'], **{'val aAcc': r['aAcc']}) for r in val])
    return result, curve


# ---------------------------------------------------------------- the sweep

def read_rows(path: Path) -> List[dict]:
    if not path.is_file():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, header: Sequence[str], rows: Iterable[dict]) -> None:
    write_csv(path, header, [[row.get(column, '') for column in header] for row in rows])


def row_key(row: dict) -> Tuple[str, str, int, int]:
    return row['setting'], row['model'], int(row['distance']), int(row['seed'])


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


def local_reach(config_dir: Path, width: int) -> Tuple[Window, Tuple[int, int]]:
    """Plain MambaOut's window in the local setting (the logits') and the reach of an output
    pixel to one side (least, most), from the config's real model."""
    model = build_model(Config.fromfile(config_dir / CONFIGS['local', 'MambaOut']))
    network = nn.Sequential(model.backbone, model.decode_head).eval()
    window = receptive_field(network, torch.zeros(1, 3, STRIP_HEIGHT, width))
    return window, pixel_reach(window)


Rows = List[dict]


def trained_cells(tasks: Sequence[Tuple[Cell, tuple]], jobs: int):
    """``(cell, result, curve)`` of each ``(cell, train_cell arguments)`` as it finishes: in this
    process, or in ``jobs`` processes of their own sharing this one's threads."""
    if jobs == 1:
        for cell, arguments in tasks:
            yield (cell, *train_cell(*arguments))
        return
    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context('spawn'),
                             initializer=torch.set_num_threads, initargs=(threads, )) as pool:
        futures = {pool.submit(train_cell, *arguments): cell for cell, arguments in tasks}
        for future in as_completed(futures):
            yield (futures[future], *future.result())


def run_sweep(out: Path, config_dir: Path, cells: Sequence[Cell], recipe: Recipe,
              on_update: Callable[[Rows, Rows], None], jobs: int = 1) -> Tuple[Rows, Rows]:
    """Train every cell not yet in ``out/results.csv`` (``jobs`` at a time), appending each as
    it finishes, and call ``on_update(results, curves)`` after each; returns all result and
    curve rows."""
    if jobs < 1:
        raise ValueError(f'jobs must be at least 1, got {jobs}')
    out = Path(out)
    check_recipe(out, recipe)
    results, curves = read_rows(out / 'results.csv'), read_rows(out / 'curves.csv')
    done = {row_key(row) for row in results}
    todo = [cell for cell in cells if cell.key() not in done]
    print(f'{len(cells)} cells: {len(cells) - len(todo)} done in {out / "results.csv"}, '
          f'{len(todo)} to train ({recipe.iters} iterations each, {jobs} at a time).', flush=True)
    tasks = []
    for cell in todo:  # the sets first, here: the jobs must not draw the same one at once
        data_root = ensure_toy_longrange(
            out / 'data' / f'd{cell.distance:03d}', num_train=recipe.num_train,
            num_val=recipe.num_val, seed=DATA_SEED, distance=cell.distance, width=recipe.width)
        tasks.append((cell, (config_dir / CONFIGS[cell.setting, cell.model], cell, recipe,
                             data_root, out / 'runs' / cell.name)))
    started = time.perf_counter()
    for number, (cell, result, curve) in enumerate(trained_cells(tasks, jobs), 1):
        curves = [row for row in curves if row_key(row) != cell.key()] + curve
        results.append(result)
        write_rows(out / 'curves.csv', CURVE_HEADER, curves)
        write_rows(out / 'results.csv', RESULT_HEADER, results)  # last: the cell is done
        elapsed = time.perf_counter() - started
        print(f'[{number}/{len(todo)}] {cell.setting} {cell.model}, distance {cell.distance}, '
              f'seed {cell.seed}: aAcc {result["aAcc"]:.1f} %, mIoU {result["mIoU"]:.1f} in '
              f'{result["seconds"]:.0f} s ({result["s/iter"]:.3f} s/iter); about '
              f'{elapsed / number * (len(todo) - number) / 60:.0f} min left', flush=True)
        on_update(results, curves)
    return results, curves


# ---------------------------------------------------------------- summaries

def accuracy_by_distance(results: Sequence[dict]) -> Dict[Tuple[str, str], Dict[int, List]]:
    """``{(setting, model): {distance: [aAcc of each seed]}}``."""
    table: Dict[Tuple[str, str], Dict[int, List]] = {}
    for row in results:
        setting, model, distance, _ = row_key(row)
        table.setdefault((setting, model), {}).setdefault(distance, []).append(
            float(row['aAcc']))
    return table


def summary_table(results: Sequence[dict]) -> str:
    """Markdown: target pixel accuracy (mean, and min–max over seeds) per distance."""
    table = accuracy_by_distance(results)
    distances = sorted({d for by_distance in table.values() for d in by_distance})

    def cell(values):
        if not values:
            return '–'
        mean = f'{statistics.mean(values):.1f}'
        return mean if len(values) == 1 else f'{mean} ({min(values):.1f}–{max(values):.1f})'

    rows = [[SETTINGS[setting], model, len(max(by_distance.values(), key=len)),
             *(cell(by_distance.get(d, [])) for d in distances)]
            for (setting, model), by_distance in sorted(table.items())]
    return markdown_table(['setting', 'model', 'seeds', *(f'{d} px' for d in distances)], rows)


def plot(results: Sequence[dict], curves: Sequence[dict], reach: Tuple[int, int],
         path: Path) -> None:
    """Top: target accuracy against distance, a line per setting and model, the seeds' spread as
    a band, plain MambaOut's reach in the local setting shaded. Below: learning curves (training
    accuracy as logged, validation accuracy as dots), one panel per distance."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    table = accuracy_by_distance(results)
    distances = sorted({d for by_distance in table.values() for d in by_distance})
    colors = dict(zip(MODELS, ('tab:blue', 'tab:orange')))
    styles = {'global': '--', 'local': '-'}
    markers = {'global': 's', 'local': 'o'}  # the settings tell apart in greyscale too
    fig = plt.figure(figsize=(max(10, 3 * len(distances)), 8.5))
    grid_spec = fig.add_gridspec(2, max(1, len(distances)), height_ratios=[3, 2])
    top = fig.add_subplot(grid_spec[0, :])
    top.axvspan(*reach, color='grey', alpha=0.25,
                label=f'plain MambaOut (b): receptive field reaches {reach[0]}–{reach[1]} px')
    top.axhline(CHANCE, color='black', linewidth=1, linestyle=':', label='chance')
    for (setting, model), by_distance in sorted(table.items()):
        xs = sorted(by_distance)
        values = [by_distance[d] for d in xs]
        top.plot(xs, [statistics.mean(v) for v in values], styles[setting],
                 marker=markers[setting], color=colors[model],
                 label=f'{model}, {SETTINGS[setting]}')
        top.fill_between(xs, [min(v) for v in values], [max(v) for v in values],
                         color=colors[model], alpha=0.15)
    top.set_xlabel('marker–target distance (px of the model input)')
    top.set_ylabel('target pixel accuracy (%)')
    top.set_ylim(0, 102)
    top.set_xticks(distances)
    top.set_xlim(0, max(distances + [reach[1]]) + 16)
    top.legend(fontsize=8, loc='lower left')
    top.set_title('Long-range toy: accuracy against distance (band: spread over seeds)')

    for column, distance in enumerate(distances):
        ax = fig.add_subplot(grid_spec[1, column])
        for (setting, model, _), by_cell in _curves_by_cell(curves, distance).items():
            train = [(int(r['iter']), float(r['train acc'])) for r in by_cell
                     if r.get('train acc') not in (None, '')]
            val = [(int(r['iter']), float(r['val aAcc'])) for r in by_cell
                   if r.get('val aAcc') not in (None, '')]
            ax.plot(*zip(*train), styles[setting], color=colors[model], linewidth=0.8,
                    alpha=0.6)
            ax.plot(*zip(*val), 'o', color=colors[model], markersize=3)
        ax.axhline(CHANCE, color='black', linewidth=1, linestyle=':')
        ax.set_ylim(0, 102)
        ax.set_title(f'{distance} px', fontsize=9)
        ax.set_xlabel('iteration', fontsize=8)
        if column == 0:
            ax.set_ylabel('accuracy (%): train line, val dots', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves_by_cell(curves: Sequence[dict], distance: int) -> Dict[tuple, List[dict]]:
    """The curve rows at ``distance``, grouped by (setting, model, seed)."""
    groups: Dict[tuple, List[dict]] = {}
    for row in curves:
        setting, model, row_distance, seed = row_key(row)
        if row_distance == distance:
            groups.setdefault((setting, model, seed), []).append(row)
    return groups
