"""
What `synth --out` writes for every target: the graph as `<target>.json`.

A target's own files (Kubernetes manifests, ...) come from its `Target.write_artifacts` hook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_graph"]


def write_graph(graph: dict[str, Any], out_dir: Path) -> Path:
    """Write a target's graph as `<target>.json` under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{graph['target']}.json"
    path.write_text(json.dumps(graph, indent=2) + "\n")
    return path
