"""Settings for the ``flowbank`` command (see warehouse/config.py)."""

from warehouse.config import PROJECT_ROOT, read_settings

__all__ = ["PROJECT_ROOT", "read_settings"]
