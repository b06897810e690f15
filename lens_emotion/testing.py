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
