"""Text side of TDSM: frozen text encoders, class prompt sets and an on-disk feature cache.

Importing this package loads numpy only; torch / transformers / open_clip are imported when an
encoder is built (`get_text_encoder`).

    enc = get_text_encoder("minilm")                                  # offline default, Dt = 384
    table = encode_classes(enc, classes, ("label", "description"), num_tokens=16,
                           cache_dir=Path("runs/text_cache"))         # global_ (K, 768)
"""

from tdsm_edge.text.base import TEXT_ENCODER_NAMES, TextEncoder, TextFeatures, get_text_encoder
from tdsm_edge.text.cache import TextCache
from tdsm_edge.text.prompts import PROMPT_SETS, ClassPrompts, ClassText, encode_classes, prompt_texts

__all__ = [
    "TEXT_ENCODER_NAMES",
    "PROMPT_SETS",
    "TextEncoder",
    "TextFeatures",
    "TextCache",
    "ClassPrompts",
    "ClassText",
    "encode_classes",
    "get_text_encoder",
    "prompt_texts",
]
