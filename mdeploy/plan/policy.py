"""
Residency: which countries and jurisdictions a placement may land in.

One rule, applied to every offer before anything else: a candidate outside the residency
asked for is never produced. EEA includes the EU (the EEA is the EU plus NO, IS, LI).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["EU_COUNTRIES", "allows", "describe", "jurisdiction_of_country"]

# fmt: off
EU_COUNTRIES = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
})
# fmt: on
_EEA_ONLY = frozenset({"NO", "IS", "LI"})
_JURISDICTION_INCLUDES = {"EEA": {"EU", "EEA"}}


def jurisdiction_of_country(country: str) -> str:
    """EU, EEA, UK, CH, US or other, for an ISO 3166-1 alpha-2 code."""
    if country in EU_COUNTRIES:
        return "EU"
    if country in _EEA_ONLY:
        return "EEA"
    return {"GB": "UK", "CH": "CH", "US": "US"}.get(country, "other")


def allows(residency: Sequence[str], *, country: str, jurisdiction: str) -> bool:
    """Whether an offer in `country` under `jurisdiction` satisfies `residency` ([] = anywhere)."""
    if not residency:
        return True
    for rule in residency:
        if rule == country or jurisdiction in _JURISDICTION_INCLUDES.get(rule, {rule}):
            return True
    return False


def describe(residency: Sequence[str]) -> str:
    return "[" + ", ".join(residency) + "]" if residency else "anywhere"
