"""Imports every built-in family module so that each registers itself (see config.Family)."""
from synergy_jax.models import llama  # noqa: F401
from synergy_jax.models import gemma  # noqa: F401
from synergy_jax.models import gpt2  # noqa: F401
from synergy_jax.models import gpt_neox  # noqa: F401
from synergy_jax.models import mixtral  # noqa: F401
from synergy_jax.models import qwen_moe  # noqa: F401
from synergy_jax.models import deepseek_v2  # noqa: F401
