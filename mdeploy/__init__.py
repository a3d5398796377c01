"""mdeploy: one declarative spec, one inference image, GPU endpoints on any cloud."""

__version__ = "0.1.0"
__all__ = ["__version__"]
