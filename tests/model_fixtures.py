"""Tiny stand-ins for the model files people keep on disk: the right tensor names and configs,
shapes of a few elements. Identification reads headers only, so these are all it needs.

``fake_home`` lays out a home folder as ComfyUI, A1111, LM Studio, Ollama and huggingface_hub
leave it; ``EXPECTED`` says what each model in it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def write_safetensors(path: Path, names: dict[str, tuple[int, ...]], metadata: dict | None = None) -> Path:
    """A safetensors file with these tensor names and shapes (zeros in fp16)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: np.zeros(shape, dtype=np.float16) for name, shape in names.items()}, str(path), metadata)
    return path


def write_gguf(
    path: Path,
    arch: str = "llama",
    *,
    name: str = "",
    template: str | None = CHAT_TEMPLATE,
    layers: int = 2,
) -> Path:
    """A chat-model GGUF (``layers`` blocks of 8x8 f32 matrices), as llama.cpp's converters write one."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    if name:
        writer.add_name(name)
    writer.add_block_count(layers)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_context_length(64)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.zeros((32, 8), dtype=np.float32))
    for block in range(layers):
        writer.add_tensor(f"blk.{block}.attn_q.weight", np.zeros((8, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.zeros(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


# --------------------------------------------------------------------------- single files

SD15 = {
    "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (4, 768),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (16, 8),
    "first_stage_model.encoder.down.0.block.0.conv1.weight": (4, 4, 3, 3),
    "first_stage_model.decoder.up.0.block.0.conv1.weight": (4, 4, 3, 3),
}
SD2 = {
    "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (4, 1024),
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (24, 8),
    "first_stage_model.encoder.down.0.block.0.conv1.weight": (4, 4, 3, 3),
}
SDXL = {
    "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3),
    "model.diffusion_model.label_emb.0.0.weight": (8, 16),
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (16, 8),
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (24, 8),
    "first_stage_model.decoder.up.0.block.0.conv1.weight": (4, 4, 3, 3),
}
SD35 = {
    "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (24, 8),
    "model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight": (24, 8),
    "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": (16, 8),
}
FLUX = {
    "double_blocks.0.img_attn.qkv.weight": (24, 8),
    "single_blocks.0.linear1.weight": (24, 8),
    "guidance_in.in_layer.weight": (8, 4),
}
WAN_13B = {
    "patch_embedding.weight": (8, 16, 1, 2, 2),
    "blocks.0.self_attn.q.weight": (8, 8),
    "blocks.0.cross_attn.k.weight": (8, 8),
    "text_embedding.0.weight": (8, 16),
}
LTX = {
    "model.diffusion_model.patchify_proj.weight": (8, 16),
    "model.diffusion_model.adaln_single.emb.timestep_embedder.linear_1.weight": (8, 8),
    "model.diffusion_model.transformer_blocks.0.attn1.to_q.weight": (8, 8),
}
MOTION_MODULE = {
    "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": (8, 8),
    "mid_block.motion_modules.0.temporal_transformer.proj_in.weight": (8, 8),
    "up_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": (8, 8),
}
LORA_SDXL = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 2048),
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": (640, 4),
    "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768),
}
LORA_SD15 = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768),
}
LORA_FLUX = {
    "transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": (4, 8),
    "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight": (8, 4),
}
VAE_SD = {
    "encoder.down.0.block.0.conv1.weight": (4, 4, 3, 3),
    "decoder.up.0.block.0.conv1.weight": (4, 4, 3, 3),
    "decoder.conv_in.weight": (8, 4, 3, 3),
}
CLIP_L = {"text_model.encoder.layers.0.mlp.fc1.weight": (16, 8)}


# --------------------------------------------------------------------------- the hub cache


def hub_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A repo in the huggingface_hub cache layout: files are blobs named by their hash, the
    snapshot holds relative links to them, ``refs/main`` names the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _file_bytes(tmp: Path, writer, *args, **kwargs) -> bytes:
    path = writer(tmp / "scratch", *args, **kwargs)
    data = path.read_bytes()
    path.unlink()
    return data


def _json(config: dict) -> bytes:
    return json.dumps(config).encode()


def fill_hub_cache(cache: Path, scratch: Path) -> None:
    scratch.mkdir(parents=True, exist_ok=True)

    def tensors(names: dict) -> bytes:
        return _file_bytes(scratch, write_safetensors, names)

    hub_repo(
        cache,
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        {
            "model_index.json": _json(
                {
                    "_class_name": "StableDiffusionPipeline",
                    "unet": ["diffusers", "UNet2DConditionModel"],
                    "text_encoder": ["transformers", "CLIPTextModel"],
                    "vae": ["diffusers", "AutoencoderKL"],
                    "safety_checker": [None, None],
                }
            ),
            "v1-5-pruned-emaonly.safetensors": tensors(SD15),  # the single file beside the parts
            "unet/config.json": _json({"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768}),
            "unet/diffusion_pytorch_model.safetensors": tensors({"conv_in.weight": (8, 4, 3, 3)}),
            "unet/diffusion_pytorch_model.fp16.safetensors": tensors({"conv_in.weight": (8, 4, 3, 3)}),
            "text_encoder/config.json": _json({"model_type": "clip_text_model"}),
            "text_encoder/model.safetensors": tensors(
                {"text_model.embeddings.token_embedding.weight": (16, 8)}
            ),
            "vae/config.json": _json({"_class_name": "AutoencoderKL"}),
            "vae/diffusion_pytorch_model.safetensors": tensors({"encoder.conv_in.weight": (8, 3, 3, 3)}),
        },
    )
    hub_repo(
        cache,
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        {
            "model_index.json": _json(
                {
                    "_class_name": "WanPipeline",
                    "transformer": ["diffusers", "WanTransformer3DModel"],
                    "transformer_2": [None, None],
                }
            ),
            "transformer/config.json": _json({"_class_name": "WanTransformer3DModel", "in_channels": 16}),
            "transformer/diffusion_pytorch_model.safetensors": tensors(
                {"patch_embedding.weight": (8, 16, 1, 2, 2)}
            ),
        },
    )
    hub_repo(
        cache,
        "Lightricks/LTX-Video",
        {
            "model_index.json": _json(
                {"_class_name": "LTXPipeline", "transformer": ["diffusers", "LTXVideoTransformer3DModel"]}
            ),
            "transformer/diffusion_pytorch_model.safetensors": tensors({"proj_in.weight": (8, 8)}),
        },
    )
    hub_repo(
        cache,
        "facebook/musicgen-small",
        {
            "config.json": _json(
                {"model_type": "musicgen", "architectures": ["MusicgenForConditionalGeneration"]}
            ),
            "model.safetensors": tensors({"decoder.model.decoder.embed_tokens.0.weight": (16, 8)}),
        },
    )
    hub_repo(
        cache,
        "facebook/musicgen-melody",
        {
            "config.json": _json({"model_type": "musicgen_melody"}),
            "model.safetensors": tensors({"decoder.model.decoder.embed_tokens.0.weight": (16, 8)}),
        },
    )
    hub_repo(
        cache,
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        {
            "config.json": _json(
                {
                    "model_type": "llama",
                    "architectures": ["LlamaForCausalLM"],
                    "hidden_size": 8,
                    "intermediate_size": 16,
                    "num_hidden_layers": 1,
                    "num_attention_heads": 2,
                    "num_key_value_heads": 1,
                    "vocab_size": 32,
                    "tie_word_embeddings": True,
                }
            ),
            "model.safetensors": tensors({"model.embed_tokens.weight": (32, 8), "model.norm.weight": (8,)}),
        },
    )
    hub_repo(
        cache,
        "guoyww/animatediff-motion-adapter-v1-5-2",
        {
            "config.json": _json({"_class_name": "MotionAdapter"}),
            "diffusion_pytorch_model.safetensors": tensors(MOTION_MODULE),
        },
    )
    hub_repo(
        cache,
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
        {"Qwen2.5-0.5B-Instruct-Q4_K_M.gguf": _file_bytes(scratch, write_gguf, "qwen2")},
    )


# --------------------------------------------------------------------------- a whole home folder

EXPECTED = {
    # location (relative to the home folder, or an Ollama name): (kind, family, runs)
    "ComfyUI/models/checkpoints/v1-5-pruned-emaonly.safetensors": ("image", "SD1.5", True),
    "ComfyUI/models/checkpoints/sd_xl_base_1.0.safetensors": ("image", "SDXL", True),
    "ComfyUI/models/checkpoints/sd3.5_medium.safetensors": ("image", "SD3.5", True),
    "ComfyUI/models/diffusion_models/flux1-dev.safetensors": ("image", "Flux", True),
    "ComfyUI/models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors": ("video", "Wan 2.1", False),
    "ComfyUI/models/diffusion_models/ltx-video-2b-v0.9.safetensors": ("video", "LTX-Video", False),
    "ComfyUI/models/loras/detail_xl.safetensors": ("lora", "SDXL", False),
    "ComfyUI/models/loras/flux_realism.safetensors": ("lora", "Flux", False),
    "ComfyUI/models/vae/sdxl_vae.safetensors": ("vae", "SD VAE", False),
    "ComfyUI/models/animatediff_models/mm_sd_v15_v2.safetensors": (
        "motion_adapter",
        "AnimateDiff motion module",
        False,
    ),
    "stable-diffusion-webui/models/Stable-diffusion/v2-1_768-ema-pruned.safetensors": ("image", "SD2", True),
    "stable-diffusion-webui/models/Lora/add_detail.safetensors": ("lora", "SD1.5", False),
    "stable-diffusion-webui/models/Lora/kohya_xl.safetensors": ("lora", "SDXL", False),
    ".lmstudio/models/lmstudio-community/SmolLM2-360M-Instruct-GGUF/SmolLM2-360M-Instruct-Q8_0.gguf": (
        "chat",
        "SmolLM",
        True,
    ),
    ".lmstudio/models/lmstudio-community/gemma-2-2b-it-GGUF/gemma-2-2b-it-Q4_K_M.gguf": (
        "chat",
        "Gemma 2",
        True,
    ),
    "ollama:llama3.2:latest": ("chat", "Llama", True),
    "ollama:phi3:mini": ("chat", "Phi3", True),
    "hub:stable-diffusion-v1-5/stable-diffusion-v1-5": ("image", "SD1.5", True),
    "hub:Wan-AI/Wan2.1-T2V-1.3B-Diffusers": ("video", "Wan 2.1", True),
    "hub:Lightricks/LTX-Video": ("video", "LTX-Video", True),
    "hub:facebook/musicgen-small": ("music", "MusicGen", True),
    "hub:facebook/musicgen-melody": ("music", "MusicGen-Melody", True),
    "hub:HuggingFaceTB/SmolLM2-135M-Instruct": ("chat", "SmolLM", True),
    "hub:guoyww/animatediff-motion-adapter-v1-5-2": ("motion_adapter", "AnimateDiff motion module", False),
    "hub:bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf": ("chat", "Qwen2", True),
}
SKIPPED = {
    "ComfyUI/models/checkpoints/old_model.ckpt",  # a pickle: listed, never opened
    "ComfyUI/models/vae/clip_l.safetensors",  # a text encoder alone
}


def fake_home(home: Path) -> Path:
    """A home folder holding models of every kind the way other apps store them."""
    single_files = {
        "ComfyUI/models/checkpoints/v1-5-pruned-emaonly.safetensors": (SD15, None),
        "ComfyUI/models/checkpoints/sd_xl_base_1.0.safetensors": (SDXL, None),
        "ComfyUI/models/checkpoints/sd3.5_medium.safetensors": (SD35, None),
        "ComfyUI/models/diffusion_models/flux1-dev.safetensors": (FLUX, None),
        "ComfyUI/models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors": (WAN_13B, None),
        "ComfyUI/models/diffusion_models/ltx-video-2b-v0.9.safetensors": (LTX, None),
        "ComfyUI/models/loras/detail_xl.safetensors": (LORA_SDXL, None),
        "ComfyUI/models/loras/flux_realism.safetensors": (LORA_FLUX, None),
        "ComfyUI/models/vae/sdxl_vae.safetensors": (VAE_SD, None),
        "ComfyUI/models/vae/clip_l.safetensors": (CLIP_L, None),
        "ComfyUI/models/animatediff_models/mm_sd_v15_v2.safetensors": (MOTION_MODULE, None),
        "stable-diffusion-webui/models/Stable-diffusion/v2-1_768-ema-pruned.safetensors": (SD2, None),
        "stable-diffusion-webui/models/Lora/add_detail.safetensors": (LORA_SD15, None),
        "stable-diffusion-webui/models/Lora/kohya_xl.safetensors": (
            LORA_SD15,
            {"ss_base_model_version": "sdxl_base_v1-0"},
        ),
    }
    for relative, (names, metadata) in single_files.items():
        write_safetensors(home / relative, names, metadata)
    (home / "ComfyUI/models/checkpoints/old_model.ckpt").write_bytes(b"\x80\x02}q\x00.")
    (home / "ComfyUI/models/checkpoints/put_checkpoints_here").write_text("")
    lmstudio = home / ".lmstudio/models/lmstudio-community"
    write_gguf(
        lmstudio / "SmolLM2-360M-Instruct-GGUF/SmolLM2-360M-Instruct-Q8_0.gguf", name="SmolLM2 360M Instruct"
    )
    write_gguf(lmstudio / "gemma-2-2b-it-GGUF/gemma-2-2b-it-Q4_K_M.gguf", "gemma2")
    ollama_model(home, "llama3.2", "latest", write_gguf(home / "scratch.gguf", name="Llama 3.2 3B Instruct"))
    ollama_model(home, "phi3", "mini", write_gguf(home / "scratch.gguf", "phi3"))
    (home / "scratch.gguf").unlink()
    fill_hub_cache(home / ".cache/huggingface/hub", home / "scratch")
    (home / "scratch").rmdir()
    return home


def ollama_model(home: Path, name: str, tag: str, gguf_file: Path, digest: str = "") -> Path:
    """An Ollama model: the GGUF as a blob named by its sha256, and a manifest naming it."""
    data = gguf_file.read_bytes()
    digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    models = home / ".ollama/models"
    blob = models / "blobs" / digest.replace(":", "-")
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    manifest = models / "manifests/registry.ollama.ai/library" / name / tag
    write_config(
        manifest,
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": "sha256:" + "0" * 64,
            },
            "layers": [
                {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": len(data)},
                {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64},
            ],
        },
    )
    return manifest


def home_env(monkeypatch, home: Path) -> Path:
    """``home`` as the home folder, with nothing else telling the scanner where to look."""
    monkeypatch.setenv("HOME", str(home))
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "OLLAMA_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("INVOKEAI_ROOT", raising=False)
    return home


def location_of(relative: str, home: Path, results) -> str:
    """The scan's location for an ``EXPECTED`` key."""
    if relative.startswith("ollama:"):
        return relative
    if relative.startswith("hub:"):
        return _hub_location(relative.removeprefix("hub:"), results)
    return str(home / relative)


def _hub_location(name: str, results) -> str:
    for item in results:
        candidate = getattr(item, "candidate", None)
        if candidate is not None and candidate.source == "hf-cache" and candidate.name == name:
            return candidate.location
    raise AssertionError(f"the scan did not find {name} in the hub cache")


def truncated_copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return target


def huge_header(path: Path) -> Path:
    """A safetensors header claiming a terabyte."""
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    return path


def non_json_header(path: Path) -> Path:
    body = b"\x00\xff not json at all"
    path.write_bytes(struct.pack("<Q", len(body)) + body)
    return path


def bogus_tensor_count_gguf(path: Path) -> Path:
    """A GGUF header claiming 2^60 tensors in a few bytes."""
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 0) + b"\x00" * 32)
    return path
