"""The pair grid's chunked assembly (phiid/grid.py): several chunks with an overlapping last one,
the half-grid band, the full grid of acts_y, a mesh exchanging rows between devices and singular
pairs all give what ``phiid.phiid`` gives pair by pair; the compiled buffer plan holds the
result, the blocks' storage and a chunk's temporaries, not copies of the result."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.phiid import grid
from synergy_jax.phiid import pairs

N = 7  # units: 4 row blocks of 2 (the band applies) and, below, chunks of 3 rows (0-2, 3-5, 4-6)


@pytest.fixture
def three_row_chunks(monkeypatch):
  """Chunks of 3 rows of a 7-unit grid; compiled programs of other chunk sizes are dropped."""
  jax.clear_caches()
  monkeypatch.setattr(grid, "CHUNK_VALUES", 16 * N * 3)
  yield
  jax.clear_caches()


def _acts(seed, p=2, t=30):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, N, t))
  a[:, 1, 1:] += 0.8 * a[:, 0, :-1]  # coupled pairs
  a[:, 4] += 0.5 * a[:, 3]
  for s in range(1, t):
    a[:, 6, s] += 0.7 * a[:, 6, s - 1]
  return a


def _per_pair(acts, config, acts_y=None):
  """(U, U, 16) from phiid.phiid of every pair, the mean over prompts (pool="mean")."""
  ys = acts if acts_y is None else acts_y
  out = np.full((N, N, 16), np.nan)
  for i in range(N):
    for j in range(N):
      if i != j or acts_y is not None:
        res = phiid.phiid(acts[:, i], ys[:, j], config=config)
        out[i, j] = np.stack([np.asarray(res[a]) for a in phiid.ATOMS], -1).mean(0)
  return out


@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_chunked_band_full_and_mesh_equal_phiid_per_pair(three_row_chunks, redundancy):
  assert grid.chunk_rows(N, N) == 3
  config = phiid.PhiidConfig(redundancy=redundancy)
  acts = _acts(0)
  shifted = np.roll(acts, 9, axis=-1)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("pairs",))
  with jax.enable_x64(True):
    band = np.asarray(phiid.all_pairs(acts, config=config, block_size=2))
    full = np.asarray(phiid.all_pairs(acts, config=config, acts_y=shifted, block_size=2))
    # 8 devices, one storage row each (7 units + a spare block): every x↔y exchanged entry
    # comes from another device.
    sharded = np.asarray(phiid.all_pairs(acts, config=config, block_size=1, mesh=mesh))
    expected = _per_pair(acts, config)
    expected_y = _per_pair(acts, config, shifted)
  off = ~np.eye(N, dtype=bool)
  assert np.isfinite(expected[off]).all() and np.isfinite(expected_y).all()
  np.testing.assert_array_equal(np.isnan(band), ~off[..., None].repeat(16, -1))
  np.testing.assert_allclose(band, expected, rtol=0, atol=1e-10)
  np.testing.assert_allclose(full, expected_y, rtol=0, atol=1e-10)
  np.testing.assert_allclose(sharded, expected, rtol=0, atol=1e-10)


def test_singular_pair_is_masked_both_ways_and_named_with_its_prompt(three_row_chunks):
  acts = _acts(1)
  acts[1, 5] = 2.0 * acts[1, 1] + 3.0  # unit 5 an affine copy of unit 1 in prompt 1 only
  with jax.enable_x64(True):
    problems = phiid.degenerate(acts, block_size=2)
    with pytest.warns(UserWarning, match=r"pairs \[\(1, 5\)\]"):
      got = np.asarray(phiid.all_pairs(acts, block_size=2, on_degenerate="mask"))
  assert [(pr.unit, pr.partner, pr.prompt) for pr in problems] == [(1, 5, 1)]
  assert np.isnan(got[1, 5]).all() and np.isnan(got[5, 1]).all()
  off = ~np.eye(N, dtype=bool)
  off[1, 5] = off[5, 1] = False
  assert np.isfinite(got[off]).all()


def _plan(u, mesh):
  acts = jax.ShapeDtypeStruct((2, u, 12), jnp.float32)
  return pairs.all_pairs_core.lower(acts, acts, config=phiid.PhiidConfig(), same=True, mesh=mesh,
                                    block=64, dtype=jnp.dtype("float32")).compile()


def test_compiled_plan_holds_the_result_the_band_and_a_chunk():
  """U = 2048, float32, blocks of 64 rows: the result is 2048² × 16 × 4 B = 256 MiB (+ the int32
  first-singular-prompt map). Assembling the whole grid at once held about two more results as
  temporaries; now the temporaries are the band storage ((U, 64 + U/2) values and prompts) and
  at most four chunk buffers."""
  u = 2048
  mem = _plan(u, None).memory_analysis()
  result = u * u * 16 * 4 + u * u * 4
  band = u * (64 + u // 2) * (16 * 4 + 4)
  assert result <= mem.output_size_in_bytes <= result + 64  # + the output tuple's pointers
  assert 0 < mem.temp_size_in_bytes <= band + 4 * grid.CHUNK_VALUES * 4, mem.temp_size_in_bytes
  assert mem.temp_size_in_bytes < 0.7 * result


def test_sharded_plan_keeps_only_its_own_band_rows():
  """8 devices at U = 2048: each keeps its own rows of the band and receives the x↔y exchanged
  entries chunk by chunk, so its temporaries stay below half of the whole band (which a device
  held when the band was gathered)."""
  u = 2048
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("pairs",))
  mem = _plan(u, mesh).memory_analysis()
  whole_band = u * (64 + u // 2) * (16 * 4 + 4)
  shard = (u * u * 16 * 4 + u * u * 4) // 8
  assert shard <= mem.output_size_in_bytes <= shard + 64
  assert 0 < mem.temp_size_in_bytes < whole_band / 2, mem.temp_size_in_bytes
