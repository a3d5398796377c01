"""
Fuzzing the local config.json a spec can point at (`model.source: ./folder`).

The file comes from a downloaded checkpoint: huge integers, deep nesting, wrong types, junk
where numbers belong. validate and plan must refuse it with exit 2 (or size it), never crash.
Hypothesis, derandomized: the same 600 configs every run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fuzz.fuzz_harness import problems, run
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

CASES = 600
# The keys a Hugging Face config.json sizes from, with plausible values (Mistral 7B's shape).
PLAUSIBLE = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 32768,
    "max_position_embeddings": 32768,
    "torch_dtype": "bfloat16",
}
junk = st.recursive(
    st.one_of(
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _text(raw: dict[str, Any], depth: int) -> str:
    """The config as JSON text, nested `depth` levels deep under text_config (written as text:
    building it as dicts would hit Python's own recursion limit in json.dumps)."""
    if not depth:
        return json.dumps(raw)
    nested = '{"text_config": ' * depth + "1" + "}" * depth
    return json.dumps(raw)[:-1] + ', "text_config": ' + nested + "}"


config = st.builds(
    lambda changes, deep: (_text({**PLAUSIBLE, **changes}, deep), deep),
    st.dictionaries(st.sampled_from(sorted(PLAUSIBLE)), junk, max_size=3),
    st.sampled_from([0, 0, 0, 5, 500, 5000]),
)
SPEC = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: chat}
model: {id: acme/local, source: ./weights, max_context: 4096}
placement: {clouds: [aws]}
"""
_DIR = Path(tempfile.mkdtemp(prefix="mdeploy-config-fuzz-"))


@settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported as is
    suppress_health_check=list(HealthCheck),
)
@given(case=config, verb=st.sampled_from(["validate", "plan"]))
def test_a_hostile_local_config_never_crashes(case: tuple[str, int], verb: str) -> None:
    (_DIR / "weights").mkdir(exist_ok=True)
    (_DIR / "weights" / "config.json").write_text(case[0], encoding="utf-8")
    (_DIR / "spec.yaml").write_text(SPEC, encoding="utf-8")
    outcome = run(verb, str(_DIR / "spec.yaml"), "--json")
    assert problems(outcome) == [], (outcome.stdout[-600:], outcome.stderr[-600:])
