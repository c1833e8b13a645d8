"""Reading a process's settings: the one place that touches the environment and the config file.

It sits in warehouse/ (the lowest layer allowed IO) so every entry point can use it: the
``flowbank`` command, and ``python -m bytewax.run "pipelines.flow:build_flow()"`` started by hand.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from control.settings import Settings, SettingsError, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``FLOWBANK_*`` variables, then the TOML file named by ``FLOWBANK_CONFIG``."""
    env = os.environ if environ is None else environ
    toml: dict[str, Any] = {}
    config_path = env.get("FLOWBANK_CONFIG")
    if config_path:
        try:
            toml = tomllib.loads(Path(config_path).read_text("utf-8"))
        except OSError as exc:
            raise SettingsError(f"FLOWBANK_CONFIG: cannot read {config_path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SettingsError(f"FLOWBANK_CONFIG: {config_path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"FLOWBANK_CONFIG: {config_path} is not valid TOML: {exc}") from None
    return load_settings(env, toml, default_data_dir=PROJECT_ROOT / "var")
