"""Run-time helpers shared by the tools: config preparation, file checks, runner construction."""
from .data_check import check_dataset_files
from .runtime import (build_runner, check_pretrained_files, configure_testing,
                      configure_training, load_config, toolbox_of)

__all__ = [
    'build_runner', 'check_dataset_files', 'check_pretrained_files', 'configure_testing',
    'configure_training', 'load_config', 'toolbox_of'
]
