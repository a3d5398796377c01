"""
Property: whatever the spec, no candidate ever lies outside the residency asked, nor in a
region that is not open to every account (opt-in, restricted, another partition).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan.factories import make_spec

from mdeploy.catalog import load_regions
from mdeploy.plan import make_plan

EU = {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
      "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"}  # fmt: skip
RULES = ["EU", "EEA", "UK", "CH", "US", "other", "FR", "DE", "ES", "SE", "GB", "NO", "JP", "IN"]


def _inside(residency: list[str], country: str, jurisdiction: str) -> bool:
    """An independent statement of the rule (not the planner's code)."""
    if not residency:
        return True
    allowed_countries = {r for r in residency if len(r) == 2 and r.isupper() and r not in
                         {"EU", "UK", "CH", "US"}}  # fmt: skip
    if "EU" in residency or "EEA" in residency:
        allowed_countries |= EU
    if "EEA" in residency:
        allowed_countries |= {"NO", "IS", "LI"}
    if "UK" in residency:
        allowed_countries.add("GB")
    if "CH" in residency:
        allowed_countries.add("CH")
    if "US" in residency:
        allowed_countries.add("US")
    if country in allowed_countries:
        return True
    return "other" in residency and jurisdiction == "other"


specs = st.fixed_dictionaries(
    {
        "residency": st.lists(st.sampled_from(RULES), max_size=3, unique=True),
        "clouds": st.lists(
            st.sampled_from(["aws", "azure", "gcp", "coreweave"]),
            min_size=1,
            max_size=4,
            unique=True,
        ),
        "max_context": st.sampled_from([2048, 8192, 32768, 131072]),
        "max_concurrency": st.integers(1, 64),
        "budget": st.one_of(st.none(), st.floats(0.5, 120)),
        "kv_fp8": st.booleans(),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_no_candidate_outside_residency(params):
    spec = make_spec(
        model={"max_context": params["max_context"]},
        serving={"max_concurrency": params["max_concurrency"],
                 "kv_cache_dtype": "fp8" if params["kv_fp8"] else "auto"},
        placement={"residency": params["residency"], "clouds": params["clouds"],
                   "max_hourly_usd": params["budget"]},
    )  # fmt: skip
    plan = make_plan(spec)
    access = load_regions()
    for cand in plan.candidates:
        assert _inside(params["residency"], cand.country, cand.jurisdiction), cand
        assert access[(cand.target, cand.region)].access == "open", cand  # none named here
        assert cand.target in params["clouds"]
        if params["budget"] is not None:
            assert cand.hourly_usd <= params["budget"] + 1e-9
        assert (
            cand.required_gib_per_gpu <= spec.serving.gpu_memory_utilization * cand.gpu_memory_gib
        )
    if plan.candidates:
        assert plan.chosen == min(plan.candidates, key=lambda c: c.hourly_usd)
    else:
        assert plan.chosen is None
