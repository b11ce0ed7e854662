"""Training-run machinery: hooks that make runs resumable and stop bad ones early."""
from .hooks import (NonFiniteLossError, RefuseMismatchedCheckpointHook, ResumeRandomStateHook,
                    StopOnNonFiniteLossHook)

__all__ = [
    'NonFiniteLossError', 'RefuseMismatchedCheckpointHook', 'ResumeRandomStateHook',
    'StopOnNonFiniteLossHook'
]
