"""Helpers for tests of featurelens and of its plugins: tiny real models made on the spot.

Nothing here downloads anything: the tokenizer is trained on a few sentences and the
model is a randomly initialised Llama, both saved as an ordinary transformers folder
that any ``from_pretrained`` call (and so the ``hf`` backend) can load.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_TEXT = [
    "The quick brown fox jumps over the lazy dog 123 times.",
    "def add(a, b):\n    return (a + b) * [1, 2, 3]",
    "In 1984, the numbers 7, 8 and 9 were (mostly) odd; {x: y} is a dict.",
    "Features fire on digits like 0123456789 and on brackets ) ] }.",
]


def make_tiny_llama(path: str | Path, *, n_layers: int = 2, d_model: int = 32,
                    vocab_size: int = 320, max_positions: int = 256, seed: int = 0) -> Path:
    """Save a random Llama model and a trained byte-level BPE tokenizer in ``path``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SAMPLE_TEXT * 4, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "</s>", "<pad>"], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=2 * d_model,
        num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path
