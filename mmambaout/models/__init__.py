from .backbones import MambaOut, VMamba  # noqa: F401
