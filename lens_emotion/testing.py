"""Tiny random-weight models, built offline, for fast tests of shapes and plumbing.

They are real Hugging Face folders (config, safetensors weights, a small byte-level BPE
tokenizer trained on the built-in sample texts), so they exercise exactly the same loading
path as real checkpoints: ``load_model(make_tiny_model(tmp_path))``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)

_EXTRA_WORDS = (
    "anger boredom disgust fear guilt joy neutral pride relief sadness shame surprise trust "
    "happiness What are the inferred emotions in the following contexts Context Answer "
    "Choose one of emotion first word"
)


def _training_corpus() -> list[str]:
    from lens_emotion.data import load_sample

    texts = list(load_sample(text_column="generated_text").texts)
    words = _EXTRA_WORDS.split()
    # Repeat label words with and without a leading space so they become single tokens.
    # Texts also appear after a space (as in "Context: I ...") so " I", " My" get tokens.
    return texts + [" " + t for t in texts] + [" ".join(words)] * 50 + ["\n".join(words)] * 50


def _train_tokenizer(corpus: Iterable[str], vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=TINY_CHAT_TEMPLATE,
    )


def make_tiny_model(
    out_dir: str | Path,
    arch: str = "llama",
    seed: int = 0,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    vocab_size: int = 2048,
) -> Path:
    """Write a tiny random-weight causal LM folder and return its path.

    Args:
        out_dir: Folder to create (its parent must exist).
        arch: ``"llama"`` (RoPE, RMSNorm, gated MLP, grouped-query attention like SmolLM2) or
            ``"gpt2"`` (absolute position embeddings, LayerNorm).
        seed: Seed for the random weights.
        n_layers: Number of blocks.
        d_model: Residual width.
        n_heads: Query heads.
        n_kv_heads: Key/value heads (llama only).
        vocab_size: Tokenizer and embedding size.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = _train_tokenizer(_training_corpus(), vocab_size)
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=n_kv_heads,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            n_positions=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"Unknown tiny architecture '{arch}': use 'llama' or 'gpt2'.")
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


TINY_FAMILIES: tuple[str, ...] = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3",
    "phi3",
    "olmo2",
    "gpt2",
    "gpt_neox",
)
"""Decoder families :func:`make_tiny_family_model` builds (one per transformers model class)."""

_TOKENIZERS: dict[int, object] = {}


def _cached_tokenizer(vocab_size: int) -> object:
    """One trained tokenizer per vocabulary size per process (training takes ~1 s)."""
    if vocab_size not in _TOKENIZERS:
        _TOKENIZERS[vocab_size] = _train_tokenizer(_training_corpus(), vocab_size)
    return _TOKENIZERS[vocab_size]


def _family_model(family: str, tokenizer: object, n_layers: int, d_model: int) -> object:
    """A random-weight transformers CausalLM of one family (small widths, short windows).

    Sliding-window families get a window of 6 tokens so that test prompts (longer than that)
    exercise the sliding mask; Gemma 2 has attention and final-logit soft-capping switched
    on; GPT-NeoX uses the parallel residual and partial rotary embeddings of Pythia.
    """
    import transformers as tf

    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vocab = len(tokenizer)
    common = {
        "vocab_size": vocab,
        "hidden_size": d_model,
        "intermediate_size": 2 * d_model,
        "num_hidden_layers": n_layers,
        "num_attention_heads": 4,
        "max_position_embeddings": 512,
        **ids,
    }
    alternating = ["sliding_attention", "full_attention"] * n_layers
    if family == "llama":
        return tf.LlamaForCausalLM(
            tf.LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=True)
        )
    if family == "mistral":
        return tf.MistralForCausalLM(
            tf.MistralConfig(**common, num_key_value_heads=2, sliding_window=6)
        )
    if family == "qwen2":
        return tf.Qwen2ForCausalLM(
            tf.Qwen2Config(**common, num_key_value_heads=2, tie_word_embeddings=True)
        )
    if family == "qwen3":
        return tf.Qwen3ForCausalLM(
            tf.Qwen3Config(**common, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
        )
    if family == "gemma2":
        return tf.Gemma2ForCausalLM(
            tf.Gemma2Config(
                **common,
                num_key_value_heads=2,
                head_dim=16,
                query_pre_attn_scalar=16,
                sliding_window=6,
                layer_types=alternating[:n_layers],
                attn_logit_softcapping=50.0,
                final_logit_softcapping=30.0,
            )
        )
    if family == "gemma3":
        return tf.Gemma3ForCausalLM(
            tf.Gemma3TextConfig(
                **common,
                num_key_value_heads=1,
                head_dim=16,
                query_pre_attn_scalar=16,
                sliding_window=6,
                layer_types=alternating[:n_layers],
            )
        )
    if family == "phi3":
        return tf.Phi3ForCausalLM(tf.Phi3Config(**common, num_key_value_heads=2))
    if family == "olmo2":
        return tf.Olmo2ForCausalLM(tf.Olmo2Config(**common, num_key_value_heads=2))
    if family == "gpt2":
        return tf.GPT2LMHeadModel(
            tf.GPT2Config(
                vocab_size=vocab, n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=512, **ids
            )
        )
    if family == "gpt_neox":
        return tf.GPTNeoXForCausalLM(
            tf.GPTNeoXConfig(
                **common, rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False
            )
        )
    raise ValueError(f"Unknown tiny family '{family}': use one of {', '.join(TINY_FAMILIES)}.")


def make_tiny_family_model(
    out_dir: str | Path,
    family: str,
    seed: int = 0,
    n_layers: int = 3,
    d_model: int = 64,
    vocab_size: int = 2048,
) -> Path:
    """Write a tiny random-weight causal LM of one decoder family and return its folder.

    Like :func:`make_tiny_model` (a real Hugging Face folder with a trained tokenizer), for
    every family of :data:`TINY_FAMILIES`: Llama, Mistral (sliding window), Qwen2 (q/k/v
    biases), Qwen3 (QK-norm), Gemma 2 (sandwich norms, soft-capping, alternating sliding
    layers), Gemma 3 text (``Gemma3ForCausalLM``: sandwich norms, QK-norm, local/global RoPE),
    Phi-3 (fused projections), OLMo 2 (post-norms, QK-norm), GPT-2 and GPT-NeoX (parallel
    residual, partial RoPE). Four query heads; widths as given.

    Args:
        out_dir: Folder to create (its parent must exist).
        family: One of :data:`TINY_FAMILIES`.
        seed: Seed for the random weights.
        n_layers: Number of blocks.
        d_model: Residual width (a multiple of 4).
        vocab_size: Tokenizer and embedding size.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: Unknown family.
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"Unknown tiny family '{family}': use one of {', '.join(TINY_FAMILIES)}.")
    out = Path(out_dir)
    tokenizer = _cached_tokenizer(vocab_size)
    torch.manual_seed(seed)
    model = _family_model(family, tokenizer, n_layers, d_model)
    with torch.no_grad():  # random norm gains, so that folding or skipping a norm shows up
        for name, param in model.named_parameters():
            if "norm" in name or ".ln" in name or name.startswith("ln"):
                param.add_(0.2 * torch.randn_like(param))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
