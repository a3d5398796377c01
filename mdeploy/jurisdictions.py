"""
The jurisdictions residency is written in: one tuple for the spec (placement.residency) and
the catalog (each region's jurisdiction column). A leaf module: both layers read it, and the
catalog stays free of the spec's pydantic import.
"""

from __future__ import annotations

__all__ = ["JURISDICTIONS"]

# "other" is the catalog's word for a region outside the named ones; a spec may allow it.
JURISDICTIONS = ("EU", "EEA", "UK", "CH", "US", "other")
