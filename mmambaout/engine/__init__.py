"""Training-run machinery: hooks that make runs resumable, stop bad ones early and load
published whole-model checkpoints."""
from .hooks import (ConvertBackboneCheckpointHook, NonFiniteLossError,
                    RefuseMismatchedCheckpointHook, ResumeRandomStateHook,
                    StopOnNonFiniteLossHook)

__all__ = [
    'ConvertBackboneCheckpointHook', 'NonFiniteLossError', 'RefuseMismatchedCheckpointHook',
    'ResumeRandomStateHook', 'StopOnNonFiniteLossHook'
]
