from .backbones import MambaOut  # noqa: F401
