"""How runs are named, shared by experiment ids and the results tables (no JAX import)."""


def measure_tag(measure: str, ig_steps: int, ig_variant: str) -> str:
    """The measure with its settings where they matter, as in run ids: ``integrated_gradient-50a``
    (50 steps, alpha-weighted; ``t`` for textbook), else the measure's name."""
    if measure == "integrated_gradient":
        return f"{measure}-{ig_steps}{'a' if ig_variant == 'alpha_weighted' else 't'}"
    return measure
