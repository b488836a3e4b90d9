"""Tiny, randomly initialised text encoders and a vision-language model, saved the way the
diffusers pipelines and ``transformers`` hubs lay them out, built offline.

No weights or tokenizers can be downloaded here, so tests of ``embed-prompts`` and
``caption`` build their own: a ``tokenizers`` model trained on :data:`CORPUS` (Unigram for
T5/UMT5 as ``spiece.model`` is one, byte-level BPE for CLIP and Qwen2, as theirs are) wrapped
in the ``transformers`` tokenizer class of the real model, and a model of the real class from
a config with tiny sizes. Each writer fills a diffusers-pipeline-style folder
(``text_encoder/`` + ``tokenizer/``, Flux also ``text_encoder_2/`` + ``tokenizer_2/``) or a
hub-style VLM folder (model + processor in one folder).
"""

from __future__ import annotations

from pathlib import Path

import torch

QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
"""diffusers' QwenImagePipeline ``prompt_template_encode`` (pipeline_qwenimage.py)."""

CORPUS = (
    QWEN_IMAGE_TEMPLATE.format("a sunlit sky over snowy mountains"),
    "[Overexposed: the sun and bright clouds]; [Underexposed: tree bark in the shade]",
    "a dark forest floor with roots, moss and fallen leaves",
    "a window with a street lamp, neon signs and car headlights at night",
    "the picture shows a bright lamp, a white wall and a grey floor",
    "In a short phrase, what is in this crop of the brightest or darkest area?",
)
"""Sentences the tiny tokenizers are trained on (every word of the Qwen-Image template, so
its prefix is 34 tokens, as with Qwen2.5-VL's real tokenizer)."""

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""Qwen2.5-VL's chat format (image placeholders, roles), without its default system turn."""
_QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
"""Qwen2's pre-tokenizer pattern (its tokenizer.json)."""


def _unigram_t5_tokenizer():
    """A T5-style (Metaspace Unigram, ``</s>`` appended, pad 0) tokenizer on :data:`CORPUS`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import T5Tokenizer

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tokenizer.post_processor = TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                  special_tokens=[("</s>", 1)])
    return T5Tokenizer(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>",
                       unk_token="<unk>", extra_ids=0)


def _qwen2_tokenizer():
    """Qwen2's tokenizer class (byte-level BPE, Qwen2's pre-tokenizer, its special tokens)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return Qwen2Tokenizer(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", unk_token=None)


def _clip_tokenizer():
    """CLIP's tokenizer class (byte-level BPE, ``</w>`` word ends, lower case) on a
    vocabulary and merges trained on :data:`CORPUS`."""
    import json

    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    special = ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"), behavior="removed",
                             invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=special, end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" "))
              for pair in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges, model_max_length=77)


def _save(model, tokenizer, folder: Path, encoder: str, tokenizer_folder: str) -> None:
    model.save_pretrained(folder / encoder)
    tokenizer.save_pretrained(folder / tokenizer_folder)


def write_tiny_umt5(folder: str | Path, width: int = 32, seed: int = 0) -> Path:
    """A Wan-style pipeline folder: ``text_encoder/`` (``UMT5EncoderModel``, ``width`` wide,
    one layer) and ``tokenizer/`` (``T5Tokenizer``)."""
    from transformers import UMT5Config, UMT5EncoderModel

    folder = Path(folder)
    tokenizer = _unigram_t5_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer), d_model=width, d_kv=8, d_ff=16, num_layers=1,
            num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=16))
    _save(model, tokenizer, folder, "text_encoder", "tokenizer")
    return folder


def write_tiny_flux_encoders(folder: str | Path, seed: int = 0) -> Path:
    """A Flux-style pipeline folder: ``text_encoder/`` + ``tokenizer/`` (``CLIPTextModel``,
    ``CLIPTokenizer`` with 77 tokens) and ``text_encoder_2/`` + ``tokenizer_2/``
    (``T5EncoderModel``, ``T5Tokenizer``)."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    folder = Path(folder)
    clip_tokenizer, t5_tokenizer = _clip_tokenizer(), _unigram_t5_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clip = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(clip_tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
            projection_dim=32, bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id, pad_token_id=clip_tokenizer.pad_token_id))
        t5 = T5EncoderModel(T5Config(
            vocab_size=len(t5_tokenizer), d_model=48, d_kv=8, d_ff=16, num_layers=1,
            num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=16,
            feed_forward_proj="gated-gelu"))
    _save(clip, clip_tokenizer, folder, "text_encoder", "tokenizer")
    _save(t5, t5_tokenizer, folder, "text_encoder_2", "tokenizer_2")
    return folder


def _tiny_qwen25_vl(tokenizer, seed: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    special = {"bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
               "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, **special,
                     "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": 32, "fullatt_block_indexes": [0]},
        **ids, **special)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Qwen2_5_VLForConditionalGeneration(config).eval()


def write_tiny_qwen_image_encoder(folder: str | Path, seed: int = 0) -> Path:
    """A Qwen-Image-style pipeline folder: ``text_encoder/``
    (``Qwen2_5_VLForConditionalGeneration``, 32 wide) and ``tokenizer/`` (``Qwen2Tokenizer``)."""
    folder = Path(folder)
    tokenizer = _qwen2_tokenizer()
    _save(_tiny_qwen25_vl(tokenizer, seed), tokenizer, folder, "text_encoder", "tokenizer")
    return folder


def write_tiny_qwen25_vl(folder: str | Path, seed: int = 0) -> Path:
    """A hub-style Qwen2.5-VL folder (model, ``Qwen2_5_VLProcessor`` with images resized to
    56x56-112x112 pixels, chat template) for ``caption``; its generation config samples
    (``do_sample``), as the -Instruct models' does."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    folder = Path(folder)
    tokenizer = _qwen2_tokenizer()
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
        tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_VL_CHAT_TEMPLATE)
    model = _tiny_qwen25_vl(tokenizer, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = True
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
