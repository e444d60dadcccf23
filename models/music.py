"""Music model loaders (workers only): the demo MusicGen / MusicGen-Melody models and real ones.

Two engines. **MusicGen** (transformers; small, medium, large, Melody, and the stereo variants,
whose decoder interleaves a left and a right set of codebooks): a token-by-token language model
over EnCodec codes, any length through windows. **Stable Audio Open** (diffusers'
``StableAudioPipeline``): a diffusion transformer over a stereo 44.1 kHz latent, one clip of at
most ``sample_size x hop / rate`` seconds (47.55 s for the real model), never extended.

The demo models are tiny random-weight MusicGen models (T5-style text encoder, EnCodec, decoder)
built from configs on first run (docs/FIELD-NOTES.md §5), saved once with ``save_pretrained`` into the
models folder and loaded back through the same ``from_pretrained`` path a real folder takes.
Real models come from a hub id (cache first, then online) or a local folder: a transformers
MusicGen folder (``config.json``) or a diffusers Stable Audio folder (``model_index.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.demo_store import TINY_T5, ensure_saved
from models.sources import SourceKind, classify
from models.tiny_tokenizers import fast_tokenizer
from workers.errors import MissingModel

DEMO_MUSICGEN_ID = "demo-musicgen"
DEMO_MELODY_ID = "demo-musicgen-melody"
DEMO_IDS = (DEMO_MUSICGEN_ID, DEMO_MELODY_ID)
DEMO_CODEBOOK_SIZE = 64
MELODY_MODEL_TYPE = "musicgen_melody"
TRAINED_WINDOW_S = 30.0
"""MusicGen was trained on 30 s clips: longer windows drift even where positions would allow them."""
CHROMA_HOP = 4096
"""Hop length of MusicGen-Melody's chroma feature extractor (7.8125 chroma frames/s at 32 kHz)."""
MUSICGEN, STABLE_AUDIO = "musicgen", "stable-audio"
"""The two engines (``MusicModel.engine``)."""


@dataclass
class MusicModel:
    """A loaded MusicGen(-Melody) model with what the music pipeline needs to know about it."""

    spec: str
    model: Any
    tokenizer: Any
    melody: bool
    demo: bool
    sample_rate: int
    frame_rate: float
    """Codec frames (decoder tokens per codebook) per second of audio."""
    num_codebooks: int
    channels: int
    max_window_s: float
    """Longest stretch one ``generate`` call may produce (Stable Audio: the longest clip at all)."""
    engine: str = MUSICGEN
    """``MUSICGEN`` (``model`` is a MusicGen model) or ``STABLE_AUDIO`` (``model`` is the pipeline)."""

    @property
    def title(self) -> str:
        """The engine as the UI and the parameters name it."""
        if self.engine == STABLE_AUDIO:
            return "Stable Audio Open"
        stereo = " (stereo)" if self.channels == 2 else ""
        return ("MusicGen-Melody" if self.melody else "MusicGen") + stereo

    @property
    def hop(self) -> int:
        """Audio samples per codec frame."""
        return round(self.sample_rate / self.frame_rate)

    @property
    def chroma_frame_rate(self) -> float:
        return self.sample_rate / CHROMA_HOP

    def weight_bytes(self) -> int:
        if self.engine == STABLE_AUDIO:
            parts = [m for m in self.model.components.values() if hasattr(m, "parameters")]
        else:
            parts = [self.model]
        return sum(p.numel() * p.element_size() for part in parts for p in part.parameters())


def _tiny_configs():
    from transformers import EncodecConfig, T5Config

    text = T5Config(**TINY_T5)
    # 1.2 kbps at 100 frames/s and 6-bit codebooks = exactly 2 codebooks, matching the decoder.
    audio = EncodecConfig(
        sampling_rate=32000,
        target_bandwidths=[1.2],
        hidden_size=16,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[8, 5, 4, 2],
        num_lstm_layers=1,
        codebook_size=DEMO_CODEBOOK_SIZE,
        codebook_dim=16,
        compress=2,
    )
    decoder = dict(
        vocab_size=DEMO_CODEBOOK_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=4,
        num_codebooks=2,
        max_position_embeddings=512,
        pad_token_id=DEMO_CODEBOOK_SIZE,
        bos_token_id=DEMO_CODEBOOK_SIZE,
        audio_channels=1,
    )
    return text, audio, decoder


def build_demo_music(melody: bool = False, seed: int = 0):
    """Tiny MusicGen (or MusicGen-Melody) with random weights, and its tokenizer; no downloads."""
    import torch
    from transformers import (
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
    )

    torch.manual_seed(seed)
    text, audio, decoder = _tiny_configs()
    if melody:
        config = MusicgenMelodyConfig(
            text_encoder=text,
            audio_encoder=audio,
            decoder=MusicgenMelodyDecoderConfig(**decoder),
            num_chroma=12,
            chroma_length=round(TRAINED_WINDOW_S * 32000 / CHROMA_HOP),
        )
        model = MusicgenMelodyForConditionalGeneration(config).eval()
    else:
        config = MusicgenConfig(
            text_encoder=text, audio_encoder=audio, decoder=MusicgenDecoderConfig(**decoder)
        )
        model = MusicgenForConditionalGeneration(config).eval()
    # EnCodec initialises its codebooks to zeros: every code would decode to the same sound.
    for layer in model.audio_encoder.quantizer.layers:
        layer.codebook.embed.normal_()
        layer.codebook.embed_avg.copy_(layer.codebook.embed)
    model.generation_config.decoder_start_token_id = DEMO_CODEBOOK_SIZE
    model.generation_config.pad_token_id = DEMO_CODEBOOK_SIZE
    model.generation_config.do_sample = True
    model.generation_config.guidance_scale = 3.0
    return model, fast_tokenizer()


def ensure_demo_music(model_id: str = DEMO_MUSICGEN_ID) -> Path:
    """A demo music model's folder (model and tokenizer), built and saved on first use."""

    def save(folder: Path) -> None:
        model, tokenizer = build_demo_music(melody=model_id == DEMO_MELODY_ID)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return ensure_saved(model_id, save, marker="config.json")


def load_music_model(spec: str, device: str = "cpu") -> MusicModel:
    """Load MusicGen(-Melody, -stereo) or Stable Audio Open from a catalog id, a hub id or a local folder."""
    source = classify(spec)
    if source.kind is SourceKind.catalog:
        if spec not in DEMO_IDS:
            raise MissingModel(f"{spec} is not a music model; pick one of {', '.join(DEMO_IDS)}")
        folder: str | Path = ensure_demo_music(spec)
    elif source.kind in (SourceKind.local_folder, SourceKind.hub_id):
        folder = source.path or spec
    else:
        raise MissingModel(
            f"{spec} is a {source.kind.value}; a music model is a MusicGen or Stable Audio folder or hub id"
        )
    try:
        if is_stable_audio(source.path, spec):
            return _describe_stable_audio(spec, _stable_audio(str(folder)).to(device))
        model, tokenizer = _from_folder_or_hub(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise MissingModel(f"could not load music model {spec!r}: {exc}") from None
    return _describe(spec, model.to(device), tokenizer, demo=spec in DEMO_IDS)


def is_stable_audio(folder: Path | None, spec: str) -> bool:
    """A diffusers folder whose pipeline is ``StableAudioPipeline``; a hub id by its name (its
    model_index.json may not be downloaded yet)."""
    if folder is None:
        return "stable-audio" in spec.lower()
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        return False
    import json

    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        raise MissingModel(f"{index} is not a readable pipeline index") from None
    if name != "StableAudioPipeline":
        raise MissingModel(f"{folder} holds a {name} pipeline; music runs MusicGen or Stable Audio Open")
    return True


def _stable_audio(where: str):
    """``StableAudioPipeline``: the huggingface_hub cache first (works offline), then a download."""
    from diffusers import StableAudioPipeline

    try:
        pipe = StableAudioPipeline.from_pretrained(where, local_files_only=True)
    except OSError:
        if Path(where).exists():
            raise
        pipe = StableAudioPipeline.from_pretrained(where)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _describe_stable_audio(spec: str, pipe) -> MusicModel:
    rate = int(pipe.vae.config.sampling_rate)
    hop = int(pipe.vae.hop_length)
    return MusicModel(
        spec=spec,
        model=pipe,
        tokenizer=pipe.tokenizer,
        melody=False,
        demo=False,
        sample_rate=rate,
        frame_rate=rate / hop,
        num_codebooks=0,
        channels=int(pipe.vae.config.audio_channels),
        max_window_s=int(pipe.transformer.config.sample_size) * hop / rate,
        engine=STABLE_AUDIO,
    )


def _from_folder_or_hub(where: str):
    """The huggingface_hub cache first (works offline), then a download when online."""
    try:
        return _load(where, local_files_only=True)
    except OSError:
        if Path(where).exists():
            raise
        return _load(where, local_files_only=False)


def _load(where: str, local_files_only: bool):
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        MusicgenForConditionalGeneration,
        MusicgenMelodyForConditionalGeneration,
    )

    config = AutoConfig.from_pretrained(where, local_files_only=local_files_only)
    if config.model_type not in ("musicgen", MELODY_MODEL_TYPE):
        raise ValueError(f"it is a {config.model_type} model, not MusicGen or MusicGen-Melody")
    model_class = (
        MusicgenMelodyForConditionalGeneration
        if config.model_type == MELODY_MODEL_TYPE
        else MusicgenForConditionalGeneration
    )
    model = model_class.from_pretrained(where, local_files_only=local_files_only).eval()
    tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_files_only)
    return model, tokenizer


def _describe(spec: str, model, tokenizer, demo: bool) -> MusicModel:
    audio = model.config.audio_encoder
    decoder = model.config.decoder
    frame_rate = float(audio.frame_rate)
    # Leave room for the start token and the codebook delay pattern inside the position table.
    positions_s = (decoder.max_position_embeddings - decoder.num_codebooks - 2) / frame_rate
    return MusicModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        demo=demo,
        melody=model.config.model_type == MELODY_MODEL_TYPE,
        sample_rate=int(audio.sampling_rate),
        frame_rate=frame_rate,
        num_codebooks=int(decoder.num_codebooks),
        channels=int(getattr(decoder, "audio_channels", 1)),
        max_window_s=min(TRAINED_WINDOW_S, positions_s),
    )
