"""
Day-2 operations written once against the targets' typed contract: promote, rollback, ls.

Same layer as mdeploy.deploy: nothing here imports it. What a promotion needs from the stack
lifecycle (the live ops client, the state folder) is handed in by the CLI layer.
"""

from __future__ import annotations

__all__: list[str] = []
