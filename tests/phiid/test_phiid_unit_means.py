"""Streamed per-unit partner means (phiid.unit_means) equal phiid.all_pairs followed by
ranking.partner_mean / head_scores, including degenerate units and singular pairs (left out and
counted), on one device and split over a mesh of simulated devices; the compiled program never
holds the N × N grid."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.analysis import ranking
from synergy_jax.phiid import unit_means as um


def _acts(n, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((3, n, 20))
  a[:, 1, 1:] += 0.9 * a[:, 0, :-1]  # a coupled pair
  a[1, 3, :] = 1.5  # unit 3 constant in prompt 1: every pair of unit 3 excluded
  a[0, n - 1] = a[0, 2]  # units 2 and n − 1 identical in prompt 0: that pair is singular
  return a


@pytest.mark.parametrize("n,block,devices,config", [
    (10, 3, 4, phiid.PhiidConfig()),                # 4 blocks padded to 12 rows, over 4 devices
    (7, 7, None, phiid.PhiidConfig(pool="concat")),  # one block (odd size), pooled estimate
    (9, 2, 2, phiid.PhiidConfig(redundancy="ccs")),
])
def test_equals_all_pairs_then_partner_mean(n, block, devices, config):
  acts = _acts(n)
  mesh = None if devices is None else jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("d",))
  with jax.enable_x64(True):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # all_pairs warns about what it masks
      full = np.asarray(phiid.all_pairs(acts, config=config, on_degenerate="mask"))
    got = um.unit_means(acts, config=config, block_size=block, mesh=mesh)
  off = ~np.eye(n, dtype=bool)
  finite = np.isfinite(full).all(-1) & off
  assert not finite[3].any() and finite[2, 0]  # the fixture's problems
  assert finite[2, n - 1] == (config.pool == "concat")  # pooled over prompts it is not singular
  np.testing.assert_array_equal(got.count, finite.sum(1))
  np.testing.assert_array_equal(got.masked, (off & ~finite).sum(1))
  np.testing.assert_array_equal(got.bad, np.arange(n) == 3)
  for k, name in enumerate(phiid.ATOMS):
    want = ranking.partner_mean(full[..., k])
    np.testing.assert_array_equal(np.isnan(got.partner_mean(name)), np.isnan(want), err_msg=name)
    np.testing.assert_allclose(np.nan_to_num(got.partner_mean(name)), np.nan_to_num(want),
                               rtol=1e-10, atol=1e-12, err_msg=name)
  with np.errstate(invalid="ignore"):
    rows = np.where(finite[..., None], full, 0).sum(1) / finite.sum(1)[:, None]
  np.testing.assert_allclose(np.nan_to_num(got.as_x()), np.nan_to_num(rows), rtol=1e-10,
                             atol=1e-12)
  want, have = ranking.head_scores(full), got.head_scores()
  for field in ("synergy", "redundancy", "synergy_rank", "redundancy_rank", "rank_score",
                "balance"):
    a, b = getattr(have, field), getattr(want, field)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=field)
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-10, atol=1e-12,
                               err_msg=field)
  assert have.excluded == want.excluded == (3,)
  assert np.isfinite(have.synergy[[0, 1, 2, n - 1]]).all()


def test_compiled_plan_holds_no_pair_grid():
  """At N = 2048 the full float32 grid alone is 256 MiB; the streamed program's whole buffer plan
  (arguments, outputs, temporaries of one 128-row block) stays far below it."""
  n, p, t = 2048, 2, 12
  acts = jax.ShapeDtypeStruct((p, n, t), jnp.float32)
  mem = um.unit_sums.lower(acts, config=phiid.PhiidConfig(), mesh=None, block=64,
                           dtype=jnp.dtype("float32")).compile().memory_analysis()
  total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
  grid_bytes = n * n * 16 * 4
  assert 0 < total < grid_bytes / 8, (total, grid_bytes)


def test_bad_block_size_is_named():
  with pytest.raises(ValueError, match="block_size"):
    um.unit_means(_acts(5), block_size=0)
