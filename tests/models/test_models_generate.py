"""generate / score / head capture / interventions against transformers (PyTorch) references."""
import jax
import numpy as np
import pytest
import torch

from synergy_jax import models as M
from synergy_jax.models import generation as G
import compile_count
from models_torch_refs import VOCAB, build, pair_factory, torch_logits

TYPES = ("llama", "mistral", "qwen2", "qwen2_sliding", "qwen3")
NEW = 20


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  """model_type -> (torch model, our loaded Model, directory)."""
  return pair_factory(build, tmp_path_factory)


def _prompts(lengths, seed=0):
  rs = np.random.RandomState(seed)
  return [rs.randint(3, VOCAB, size=n) for n in lengths]


def _left_pad(prompts, pad=0):
  width = max(len(p) for p in prompts)
  ids = np.full((len(prompts), width), pad)
  mask = np.zeros((len(prompts), width), int)
  for i, p in enumerate(prompts):
    ids[i, width - len(p):] = p
    mask[i, width - len(p):] = 1
  return ids, mask


def torch_greedy(tm, prompt, n):
  with torch.no_grad():
    out = tm.generate(torch.tensor(prompt[None]), attention_mask=torch.ones(1, len(prompt),
                      dtype=torch.long), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                      pad_token_id=0, eos_token_id=None)
  return out[0, len(prompt):].numpy()


def torch_head_norms(tm, seq):
  """Per-head output norms at the o_proj input of every layer: (L, S, N) for one sequence."""
  cfg = tm.config
  n, k = cfg.num_attention_heads, tm.model.layers[0].self_attn.head_dim
  captured = []
  hooks = [layer.self_attn.o_proj.register_forward_pre_hook(
      lambda mod, args: captured.append(args[0][0].reshape(-1, n, k).norm(dim=-1)))
      for layer in tm.model.layers]
  try:
    with torch.no_grad():
      tm(torch.tensor(seq[None]))
  finally:
    for h in hooks:
      h.remove()
  return torch.stack(captured).numpy()


@pytest.mark.parametrize("model_type", TYPES)
def test_greedy_tokens_and_head_norms_match_transformers(pair, model_type):
  tm, m, _ = pair(model_type)
  prompt = _prompts([5])[0]
  ref = torch_greedy(tm, prompt, NEW)
  r = M.generate(m, prompt[None], max_new_tokens=NEW)
  np.testing.assert_array_equal(np.asarray(r.tokens[0]), ref)
  # norms at the positions whose logits produced each new token: 4 .. 4 + NEW - 1
  seq = np.concatenate([prompt, ref])
  norms = torch_head_norms(tm, seq)[:, len(prompt) - 1:len(prompt) - 1 + NEW]  # (L, T, N)
  ours = np.asarray(r.head_norms[0])  # (L, N, T)
  assert ours.shape == (m.config.num_layers, m.config.num_heads, NEW)
  np.testing.assert_allclose(ours, norms.transpose(0, 2, 1), atol=1e-4, rtol=1e-4)
  assert norms.std() > 0.05


@pytest.mark.parametrize("model_type", ["llama", "mistral"])
def test_cached_decoding_equals_uncached_forward(pair, model_type):
  _, m, _ = pair(model_type)
  prompts = _prompts([3, 9, 6], seed=1)
  ids, mask = _left_pad(prompts)
  r = M.generate(m, ids, mask, max_new_tokens=NEW, capture_outputs=True)
  s = M.score(m, r.sequences, r.prompt_lengths, capture_outputs=True)
  assert s.logprobs.shape == (3, NEW, VOCAB)
  np.testing.assert_array_equal(np.argmax(np.asarray(s.logprobs), -1), np.asarray(r.tokens))
  np.testing.assert_allclose(np.asarray(s.head_norms), np.asarray(r.head_norms), atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(s.head_outputs), np.asarray(r.head_outputs), atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(r.head_outputs), axis=-1),
                             np.asarray(r.head_norms), rtol=1e-5)
  # score's log-probs equal torch's on the same full sequences (positions count real tokens)
  tm, _, _ = pair(model_type)
  seqs, lens = np.asarray(r.sequences), np.asarray(r.prompt_lengths)
  for b in range(3):
    row = seqs[b, seqs.shape[1] - NEW - lens[b]:]
    ref = torch.log_softmax(torch.tensor(torch_logits(tm, row[None])[0]), -1).numpy()
    np.testing.assert_allclose(np.asarray(s.logprobs[b]), ref[lens[b] - 1:-1], atol=1e-4)
    tl = ref[np.arange(lens[b] - 1, len(row) - 1), row[lens[b]:]]
    np.testing.assert_allclose(np.asarray(s.token_logprobs[b]), tl, atol=1e-4)


def test_left_padded_batch_equals_each_prompt_alone(pair):
  _, m, _ = pair("qwen2")
  prompts = _prompts([2, 7, 5, 8], seed=2)
  ids, mask = _left_pad(prompts, pad=17)
  batch = M.generate(m, ids, mask, max_new_tokens=NEW)
  for b, p in enumerate(prompts):
    alone = M.generate(m, p[None], max_new_tokens=NEW)
    np.testing.assert_array_equal(np.asarray(batch.tokens[b]), np.asarray(alone.tokens[0]))
    np.testing.assert_allclose(np.asarray(batch.head_norms[b]), np.asarray(alone.head_norms[0]),
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(batch.sequences[b, 8 - len(p):]),
        np.concatenate([p, np.asarray(alone.tokens[0])]))
  # right padding in gives the same (rows are re-aligned)
  right_ids = np.zeros_like(ids)
  right_mask = np.zeros_like(mask)
  for b, p in enumerate(prompts):
    right_ids[b, :len(p)] = p
    right_mask[b, :len(p)] = 1
  right = M.generate(m, right_ids, right_mask, max_new_tokens=NEW)
  np.testing.assert_array_equal(np.asarray(right.tokens), np.asarray(batch.tokens))
  # and a ragged list of prompts is padded on the left internally
  ragged = M.generate(m, [list(p) for p in prompts], max_new_tokens=NEW)
  np.testing.assert_array_equal(np.asarray(ragged.tokens), np.asarray(batch.tokens))


def test_new_lengths_and_interventions_in_a_bucket_do_not_recompile(pair):
  _, m, _ = pair("llama")
  M.generate(m, _prompts([3])[0][None], max_new_tokens=8, head_mask=np.ones((3, 4)))
  with compile_count.compilations("_generate") as compiled:
    M.generate(m, _prompts([6])[0][None], max_new_tokens=8, head_mask=np.zeros((3, 4)))
    M.generate(m, _prompts([8])[0][None], max_new_tokens=8, head_mask=np.full((3, 4), 0.5))
    assert compiled() == 0
    M.generate(m, _prompts([9])[0][None], max_new_tokens=8, head_mask=np.ones((3, 4)))
    assert compiled() == 1  # next bucket (16)


def _torch_masked_logits(tm, ids, layer, head, replacement=None):
  k = tm.model.layers[0].self_attn.head_dim

  def hook(mod, args):
    x = args[0].clone()
    x[..., head * k:(head + 1) * k] = 0.0 if replacement is None else torch.tensor(replacement)
    return (x,)

  h = tm.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(hook)
  try:
    return torch_logits(tm, ids)
  finally:
    h.remove()


def test_head_mask_equals_zeroing_o_proj_input_in_torch(pair):
  tm, m, _ = pair("llama")
  ids = _prompts([12], seed=3)[0][None]
  mask = np.ones((3, 4), np.float32)
  mask[1, 2] = 0.0
  ours = np.asarray(M.forward(m, ids, head_mask=mask))
  ref = _torch_masked_logits(tm, ids, 1, 2)
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
  assert np.abs(ref - torch_logits(tm, ids)).max() > 1e-2  # the ablation matters
  # mean ablation: the head's output replaced by a supplied vector
  means = np.zeros((3, 4, 16), np.float32)
  means[1, 2] = np.random.RandomState(0).randn(16)
  ours = np.asarray(M.forward(m, ids, head_mask=mask, head_means=means))
  ref = _torch_masked_logits(tm, ids, 1, 2, replacement=means[1, 2])
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
  # the same mask in generate: the ablated head's norms are 0, and logits_fn agrees
  r = M.generate(m, ids, max_new_tokens=4, head_mask=mask)
  assert np.all(np.asarray(r.head_norms)[0, 1, 2] == 0)
  f = jax.jit(M.logits_fn(m.config))
  np.testing.assert_allclose(np.asarray(f(m.params, ids, None, mask)),
                             np.asarray(M.forward(m, ids, head_mask=mask)), atol=1e-6)


def test_score_with_head_mask_matches_generate_on_ablated_model(pair):
  _, m, _ = pair("qwen3")
  ids, mask = _left_pad(_prompts([4, 6], seed=4))
  r = M.generate(m, ids, mask, max_new_tokens=NEW)
  hm = np.ones((2, 4), np.float32)
  hm[0, 1] = 0
  s0 = M.score(m, r.sequences, r.prompt_lengths)
  s1 = M.score(m, r.sequences, r.prompt_lengths, head_mask=hm)
  p0 = np.exp(np.asarray(s0.logprobs))
  kl = (p0 * (np.asarray(s0.logprobs) - np.asarray(s1.logprobs))).sum(-1)
  assert kl.shape == (2, NEW) and np.all(kl >= -1e-6) and kl.mean() > 1e-4
  assert np.all(np.asarray(s1.head_norms)[:, 0, 1] == 0)


def test_sampling(pair):
  _, m, _ = pair("mistral")
  p = _prompts([5], seed=5)[0][None]
  greedy = np.asarray(M.generate(m, p, max_new_tokens=NEW).tokens)
  tiny_p = M.generate(m, p, max_new_tokens=NEW, greedy=False, top_p=1e-6, rng=0)
  np.testing.assert_array_equal(np.asarray(tiny_p.tokens), greedy)
  a = np.asarray(M.generate(m, np.repeat(p, 4, 0), max_new_tokens=NEW, greedy=False, rng=1,
                            temperature=2.0).tokens)
  b = np.asarray(M.generate(m, np.repeat(p, 4, 0), max_new_tokens=NEW, greedy=False, rng=1,
                            temperature=2.0).tokens)
  np.testing.assert_array_equal(a, b)
  assert len({tuple(row) for row in a}) > 1  # rows draw different samples
  with pytest.raises(ValueError, match="rng"):
    M.generate(m, p, max_new_tokens=3, greedy=False)
  with pytest.raises(ValueError, match="top_p"):
    M.generate(m, p, max_new_tokens=3, greedy=False, rng=0, top_p=0.0)


def test_stop_at_eos(pair):
  _, m, _ = pair("llama")
  p = _prompts([5], seed=6)[0][None]
  full = M.generate(m, p, max_new_tokens=NEW)
  toks = np.asarray(full.tokens[0])
  stop = int(np.argmax(toks != toks[0])) + 1  # first position holding a "new" token value
  eos = int(toks[stop])
  first = int(np.argmax(toks == eos))
  m2 = m.replace(config=m.config.replace(eos_token_ids=(eos,), pad_token_id=0))
  r = M.generate(m2, p, max_new_tokens=NEW, stop_at_eos=True)
  out = np.asarray(r.tokens[0])
  np.testing.assert_array_equal(out[:first + 1], toks[:first + 1])
  assert np.all(out[first + 1:] == 0) and int(r.lengths[0]) == first + 1
  norms = np.asarray(r.head_norms[0])
  np.testing.assert_allclose(norms[..., :first + 1], np.asarray(full.head_norms[0])[..., :first + 1],
                             atol=1e-6)
  assert np.all(np.isnan(norms[..., first + 1:]))


def test_bad_generate_inputs_are_named(pair):
  _, m, _ = pair("llama")
  ids, mask = _left_pad(_prompts([3, 4]))
  mask[1] = 0
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    M.generate(m, ids, mask, max_new_tokens=3)
  with pytest.raises(ValueError, match="head_mask"):
    M.generate(m, ids, max_new_tokens=3, head_mask=np.ones((4, 3)))
  with pytest.raises(ValueError, match="prompt 0.*max_position_embeddings"):
    M.generate(m, ids, max_new_tokens=200)
  with pytest.raises(ValueError, match="no continuation"):
    M.score(m, ids, [4, 4])


def test_perturb_heads(pair):
  _, m, _ = pair("llama")
  p = m.params
  new = M.perturb_heads(p, [6], 0.5, 0)  # unit 6 = layer 1, head 2
  same = M.perturb_heads(p, [(1, 2)], 0.5, 0)
  jax.tree_util.tree_map(np.testing.assert_array_equal, new, same)
  dq = np.asarray(new["layers"]["attn"]["q"]) - np.asarray(p["layers"]["attn"]["q"])  # (L, D, H, K)
  do = np.asarray(new["layers"]["attn"]["o"]) - np.asarray(p["layers"]["attn"]["o"])  # (L, H, K, D)
  changed_q = np.abs(dq).sum(axis=(1, 3)) > 0
  changed_o = np.abs(do).sum(axis=(2, 3)) > 0
  expected = np.zeros((3, 4), bool)
  expected[1, 2] = True
  np.testing.assert_array_equal(changed_q, expected)
  np.testing.assert_array_equal(changed_o, expected)
  assert abs(dq[1, :, 2].std() - 0.5) < 0.06 and abs(do[1, 2].std() - 0.5) < 0.06
  for mod, key in (("attn", "k"), ("attn", "v"), ("mlp", "gate")):
    np.testing.assert_array_equal(np.asarray(new["layers"][mod][key]),
                                  np.asarray(p["layers"][mod][key]))
  # the HF q_proj rows / o_proj columns of head 2 are what changed
  from synergy_jax.models import convert
  hf0 = convert.params_to_hf(p, m.config)
  hf1 = convert.params_to_hf(new, m.config)
  qd = np.abs(hf1["model.layers.1.self_attn.q_proj.weight"] - hf0[
      "model.layers.1.self_attn.q_proj.weight"]).sum(1)
  assert np.all(qd[32:48] > 0) and np.all(qd[:32] == 0) and np.all(qd[48:] == 0)
  od = np.abs(hf1["model.layers.1.self_attn.o_proj.weight"] - hf0[
      "model.layers.1.self_attn.o_proj.weight"]).sum(0)
  assert np.all(od[32:48] > 0) and np.all(od[:32] == 0) and np.all(od[48:] == 0)
  with pytest.raises(ValueError, match=r"unit 12 \(layer 3, head 0\)"):
    M.perturb_heads(p, [12], 0.1, 0)
  with pytest.raises(ValueError, match=r"\(layer 0, head 4\)"):
    M.perturb_heads(p, [(0, 4)], 0.1, 0)
  zero = M.perturb_heads(p, [6], 0.0, 0)
  jax.tree_util.tree_map(np.testing.assert_array_equal, zero, p)


def test_bfloat16_precision_option(pair):
  _, m, _ = pair("llama")
  mb = M.cast(m.params, "bfloat16")
  mb = m.replace(params=mb, dtype="bfloat16")
  ids = _prompts([10])[0][None]
  lf = np.asarray(M.forward(m, ids))
  lb = np.asarray(M.forward(mb, ids))
  assert lb.dtype == np.float32
  assert np.abs(lb - lf).max() < 0.05 * np.abs(lf).max()
  r = M.generate(mb, ids, max_new_tokens=5)
  assert r.head_norms.dtype == np.float32 and np.all(np.isfinite(np.asarray(r.head_norms)))


def test_bfloat16_batch_generate_matches_float32_scoring(pair):
  """bfloat16 weights at batch 3 (GQA: the cache's batched attention dots have two batch axes,
  which XLA:CPU cannot run in bfloat16 with float32 output): generate runs, and its head norms
  match float32 teacher-forced scoring of the same tokens within bfloat16 accuracy."""
  _, m, _ = pair("llama")
  mb = m.replace(params=M.cast(m.params, "bfloat16"), dtype="bfloat16")
  r = M.generate(mb, _prompts([4, 7, 5]), max_new_tokens=6)
  got = np.asarray(r.head_norms)
  want = np.asarray(M.score(m, r.sequences, r.prompt_lengths).head_norms)
  assert np.isfinite(got).all() and np.isfinite(want).all()
  np.testing.assert_allclose(got, want, rtol=0, atol=0.05 * np.abs(want).max())
  sb = np.asarray(M.score(mb, r.sequences, r.prompt_lengths).head_norms)  # no cache, batched
  np.testing.assert_allclose(sb, want, rtol=0, atol=0.05 * np.abs(want).max())


def test_stories260k_greedy_text(stories260k_dir):
  m = M.load(stories260k_dir)
  tok = M.load_tokenizer(stories260k_dir)
  assert tok("Once upon a time")["input_ids"] == [1, 403, 407, 261, 378]
  r = M.generate(m, np.array([[1]]), max_new_tokens=60)
  text = tok.decode(np.asarray(r.tokens[0]))
  assert text == ("Once upon a time, there was a little girl named Lily. She loved to play outside "
                  "in the park. One day, she saw a big, red ball. She wanted to play with it, but "
                  "it was too high")
  assert r.head_norms.shape == (1, 5, 8, 60)


def test_sharded_generate_and_score_equal_unsharded(pair):
  from jax.sharding import AxisType, Mesh
  assert len(jax.devices()) == 8
  _, m, _ = pair("llama")
  m_dir = pair("llama")[2]
  prompts = _prompts([3, 5, 7, 2, 6, 4, 8, 5], seed=7)
  ids, mask = _left_pad(prompts)
  ref = M.generate(m, ids, mask, max_new_tokens=12)
  ref_s = M.score(m, ref.sequences, ref.prompt_lengths)
  # data parallel over 8 devices
  mesh = Mesh(np.array(jax.devices()).reshape(8, 1), ("data", "model"),
              axis_types=(AxisType.Auto, AxisType.Auto))
  r = M.generate(m, ids, mask, max_new_tokens=12, mesh=mesh)
  np.testing.assert_array_equal(np.asarray(r.tokens), np.asarray(ref.tokens))
  np.testing.assert_allclose(np.asarray(r.head_norms), np.asarray(ref.head_norms), atol=1e-5)
  # data x model parallel: params split over 4 devices (heads, MLP width, vocabulary)
  mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"),
              axis_types=(AxisType.Auto, AxisType.Auto))
  ms = M.shard_model(m, mesh)
  assert len(ms.params["layers"]["attn"]["q"].sharding.device_set) == 8
  assert ms.params["layers"]["mlp"]["gate"].addressable_shards[0].data.shape[-1] == 96 // 4
  r = M.generate(ms, ids, mask, max_new_tokens=12, mesh=mesh)
  np.testing.assert_array_equal(np.asarray(r.tokens), np.asarray(ref.tokens))
  np.testing.assert_allclose(np.asarray(r.head_norms), np.asarray(ref.head_norms), atol=1e-5)
  s = M.score(ms, ref.sequences, ref.prompt_lengths, mesh=mesh)
  np.testing.assert_allclose(np.asarray(s.logprobs), np.asarray(ref_s.logprobs), atol=1e-5)
  # loading straight onto the mesh gives the same placement and values
  ml = M.load(m_dir, mesh=mesh)
  assert ml.params["layers"]["attn"]["q"].sharding == ms.params["layers"]["attn"]["q"].sharding
  jax.tree_util.tree_map(np.testing.assert_array_equal, ml.params, m.params)


def test_traceable_score_inside_jit_and_vmap(pair):
  _, m, _ = pair("llama")
  ids, mask = _left_pad(_prompts([4, 7, 5], seed=8))
  r = M.generate(m, ids, mask, max_new_tokens=6)
  masks = np.ones((2, 3, 4), np.float32)
  masks[1, 0, 3] = 0.0
  host = [M.score(m, r.sequences, r.prompt_lengths, head_mask=hm) for hm in masks]

  @jax.jit
  def f(params, tokens, lens, masks):
    mdl = m.replace(params=params)
    return jax.vmap(lambda hm: M.score(mdl, tokens, lens, head_mask=hm,
                                       continuation_length=6).logprobs)(masks)

  out = np.asarray(f(m.params, r.sequences, r.prompt_lengths, masks))
  for i in range(2):
    # two programs computing the same thing: the suite's float32 reassociation tolerance
    # (atol = rtol = 1e-5, test_models_generate_per_layer.py); on an AVX-512 AMD EPYC the vmapped
    # program differed by 1.2e-5 (1.8e-6 relative) at a log-probability of -6.68
    np.testing.assert_allclose(out[i], np.asarray(host[i].logprobs), atol=1e-5, rtol=1e-5)
  assert np.abs(out[1] - out[0]).max() > 1e-3
