"""What cannot be estimated: every degenerate unit and singular pair of an activity array."""
import jax.numpy as jnp

from synergy_jax.phiid import checks
from synergy_jax.phiid import pairs
from synergy_jax.phiid import units
from synergy_jax.phiid.config import PhiidConfig


def degenerate(acts, config=PhiidConfig(), dtype=None, acts_y=None, *, block_size=None,
               memory_bytes=2 ** 31):
  """Every unit and pair that ``all_pairs(acts, config=config, acts_y=acts_y, dtype=dtype)``
  cannot estimate, as a list of ``Problem`` (JSON-ready through ``Problem.as_dict``).

  Args:
    acts: (P, U, T) concrete activity. acts_y: optional (P, U, T) y-side activity.
    config: the estimator configuration; dtype: the compute dtype the checks run in (default as
      in ``all_pairs``).
  Returns:
    Unit problems (partner None; see ``checks`` for the reasons) sorted by unit and prompt, then
    pair problems (partner set): for the Gaussian and copula kinds, pairs whose 4×4 correlation
    matrix is singular in ``dtype`` in some prompt (e.g. y = a·x + b, or y a lagged copy of x),
    named with the first such prompt (None for pool="concat", whose estimate is pooled). Pairs
    with a degenerate unit are not listed again. The discrete plug-in estimator has no singular
    pairs.
  """
  p, u, t = pairs.validate(acts, acts_y, config, "raise")
  if not pairs.is_concrete(acts, acts_y):
    raise ValueError("phiid.degenerate needs concrete arrays (it cannot run inside jax.jit)")
  dtype = jnp.dtype(dtype) if dtype is not None else pairs.default_dtype()
  same = acts_y is None
  problems = units.unit_problems(acts, config, dtype)
  if not same:
    problems += units.unit_problems(acts_y, config, dtype, "acts_y")
  if config.kind == "discrete":
    return problems
  # Singularity depends on the correlations only: the cheap MMI pass finds it for any redundancy.
  probe = config.replace(redundancy="mmi")
  block = block_size or pairs.auto_block_size(p, u, pairs.lagged_steps(t, probe),
                                              itemsize=dtype.itemsize, memory_bytes=memory_bytes,
                                              config=probe)
  _, first = pairs.all_pairs_core(jnp.asarray(acts), jnp.asarray(acts if same else acts_y),
                                   config=probe, same=same, mesh=None, block=min(block, u),
                                   dtype=dtype)
  bad_x = pairs.bad_units(problems, u, "acts")
  bad_y = bad_x if same else pairs.bad_units(problems, u, "acts_y")
  return problems + checks.pair_problems(first, bad_x, bad_y, same, config.pool == "concat",
                                         dtype)


def check_units(acts, tau=1):
  """Legacy: the unit problems of (P, U, T) activity under the default Gaussian estimator with
  lag ``tau`` (pair problems: ``degenerate``)."""
  config = PhiidConfig(tau=tau)
  pairs.validate(acts, None, config, "raise")
  return units.unit_problems(acts, config, pairs.default_dtype())
