"""Single-file checkpoints made from tiny diffusers pipelines, in the layouts people download.

- ``write_ldm_checkpoint``: an SD 1.x / SDXL pipeline as one original-layout (LDM) file, the
  format of A1111/ComfyUI checkpoints and SDXL fine-tunes (``model.diffusion_model.`` UNet,
  ``first_stage_model.`` VAE, ``cond_stage_model.transformer.`` or ``conditioner.embedders.0/1``
  text encoders, the second in OpenCLIP's layout). The mapping is the inverse of diffusers'
  ``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint`` / ``convert_open_clip_checkpoint``;
  a file that round-trips through diffusers' own loader proves both directions.
- ``write_denoiser_file``: a denoiser saved alone (how Flux fine-tunes ship).
- ``fake_hub_cache``: a huggingface_hub cache holding a repo's snapshot, as an earlier download
  leaves it, so a single file finds its configs offline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
VAE_ATTENTION = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def unet_prefixes(config) -> list[tuple[str, str]]:
    """diffusers UNet block prefixes -> LDM ``input_blocks`` / ``middle_block`` / ``output_blocks``."""
    per = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    up_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    pairs = []
    for i in range(levels):
        for j in range(per):
            block = 1 + i * (per + 1) + j
            pairs += [
                (f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{block}.0."),
                (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{block}.1."),
            ]
        pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (per + 1)}.0.op."))
        for j in range(per + 1):
            block = i * (per + 1) + j
            pairs += [
                (f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{block}.0."),
                (f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{block}.1."),
            ]
        last = i * (per + 1) + per
        pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{last}.{2 if up_attention[i] else 1}."))
    pairs += [
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    return pairs


def ldm_unet(state: dict, config) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = {
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"],
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"],
    }
    prefixes = unet_prefixes(config)
    out = {}
    for key, tensor in state.items():
        if key in fixed:
            out[fixed[key]] = tensor
            continue
        for new, old in prefixes:
            if key.startswith(new):
                rest = key[len(new) :]
                if ".resnets." in new:
                    for a, b in RESNET:
                        rest = rest.replace(a, b)
                out[old + rest] = tensor
                break
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def ldm_vae(state: dict, config) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n = len(config["up_block_types"])
    out = {}
    for key, tensor in state.items():
        if key in fixed:
            out[fixed[key]] = tensor
            continue
        name = key
        for i in range(len(config["down_block_types"])):
            name = name.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            name = name.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
        for i in range(n):
            name = name.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block.")
            name = name.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.")
        for i in range(2):
            name = name.replace(f"mid_block.resnets.{i}.", f"mid.block_{i + 1}.")
        name = name.replace("conv_shortcut", "nin_shortcut")
        if "mid_block.attentions.0." in name:
            name = name.replace("mid_block.attentions.0.", "mid.attn_1.")
            for a, b in VAE_ATTENTION:
                name = name.replace(a, b)
            if tensor.ndim == 2:  # LDM keeps the attention projections as 1x1 convolutions
                tensor = tensor[:, :, None, None]
        out[name] = tensor
    return {"first_stage_model." + k: v for k, v in out.items()}


def hf_clip(state: dict, prefix: str) -> dict:
    """CLIP-L as LDM files keep it: transformers' own names under ``prefix`` (with ``text_model.``)."""
    named = {
        k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v
        for k, v in state.items()
    }
    return {prefix + k: v for k, v in named.items() if not k.startswith("text_projection")}


def open_clip(state: dict, prefix: str) -> dict:
    """CLIP-G in OpenCLIP's layout (fused attention in-projections, ``resblocks``), as SDXL files hold it."""
    import torch

    state = {
        k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v
        for k, v in state.items()
    }
    out = {
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
        "text_projection": state["text_projection.weight"].T.contiguous(),
    }
    layers = {int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")}
    for i in layers:
        hf, ldm = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{ldm}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{hf}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")]
            )
            out[f"{ldm}attn.out_proj.{kind}"] = state[f"{hf}self_attn.out_proj.{kind}"]
            out[f"{ldm}ln_1.{kind}"] = state[f"{hf}layer_norm1.{kind}"]
            out[f"{ldm}ln_2.{kind}"] = state[f"{hf}layer_norm2.{kind}"]
            out[f"{ldm}mlp.c_fc.{kind}"] = state[f"{hf}mlp.fc1.{kind}"]
            out[f"{ldm}mlp.c_proj.{kind}"] = state[f"{hf}mlp.fc2.{kind}"]
    return {prefix + k: v for k, v in out.items()}


def write_ldm_checkpoint(pipe, path: Path) -> Path:
    """An SD 1.x or SDXL pipeline as one original-layout safetensors file."""
    from safetensors.torch import save_file

    tensors = {
        **ldm_unet(pipe.unet.state_dict(), pipe.unet.config),
        **ldm_vae(pipe.vae.state_dict(), pipe.vae.config),
    }
    if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL
        tensors.update(hf_clip(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        tensors.update(open_clip(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        tensors.update(hf_clip(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def write_denoiser_file(pipe, path: Path) -> Path:
    """The transformer alone, as a fine-tune of it is shipped."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in pipe.transformer.state_dict().items()}, str(path))
    return path


def fake_hub_cache(cache: Path, repo: str, snapshot: Path) -> Path:
    """``repo`` laid out in ``cache`` as huggingface_hub leaves it after a download (files from
    ``snapshot``); returns the repo's folder."""
    commit = "0" * 40
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    shutil.copytree(snapshot, folder / "snapshots" / commit, dirs_exist_ok=True)
    return folder


def _swap_halves(tensor):
    """diffusers keeps an adaLN's (scale, shift), SD3's original files (shift, scale)."""
    import torch

    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first])


def sd3_original(state: dict, config) -> dict:
    """An SD3/3.5 transformer in Stability's original layout (``joint_blocks``, fused qkv), the
    inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``."""
    import torch

    used: set[str] = set()

    def take(key):
        used.add(key)
        return state[key]

    def fused(prefix, names):
        return {kind: torch.cat([take(f"{prefix}{n}.{kind}") for n in names]) for kind in ("weight", "bias")}

    out = {"pos_embed": take("pos_embed.pos_embed")}
    pairs = {
        "x_embedder.proj": "pos_embed.proj",
        "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
        "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
        "context_embedder": "context_embedder",
        "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
        "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
        "final_layer.linear": "proj_out",
    }
    last = config["num_layers"] - 1
    for i in range(config["num_layers"]):
        block, ours = f"joint_blocks.{i}.", f"transformer_blocks.{i}."
        for kind, tensor in fused(ours + "attn.", ("to_q", "to_k", "to_v")).items():
            out[f"{block}x_block.attn.qkv.{kind}"] = tensor
        for kind, tensor in fused(ours + "attn.", ("add_q_proj", "add_k_proj", "add_v_proj")).items():
            out[f"{block}context_block.attn.qkv.{kind}"] = tensor
        norms = {"x_block.attn.ln_q": "attn.norm_q", "x_block.attn.ln_k": "attn.norm_k"}
        norms |= {
            "context_block.attn.ln_q": "attn.norm_added_q",
            "context_block.attn.ln_k": "attn.norm_added_k",
        }
        for theirs, name in norms.items():
            if f"{ours}{name}.weight" in state:
                out[f"{block}{theirs}.weight"] = take(f"{ours}{name}.weight")
        pairs |= {
            f"{block}x_block.attn.proj": f"{ours}attn.to_out.0",
            f"{block}x_block.adaLN_modulation.1": f"{ours}norm1.linear",
            f"{block}x_block.mlp.fc1": f"{ours}ff.net.0.proj",
            f"{block}x_block.mlp.fc2": f"{ours}ff.net.2",
        }
        if i != last:  # the last block's context stream ends before its projection and MLP
            pairs |= {
                f"{block}context_block.attn.proj": f"{ours}attn.to_add_out",
                f"{block}context_block.adaLN_modulation.1": f"{ours}norm1_context.linear",
                f"{block}context_block.mlp.fc1": f"{ours}ff_context.net.0.proj",
                f"{block}context_block.mlp.fc2": f"{ours}ff_context.net.2",
            }
        else:
            for kind in ("weight", "bias"):
                out[f"{block}context_block.adaLN_modulation.1.{kind}"] = _swap_halves(
                    take(f"{ours}norm1_context.linear.{kind}")
                )
        if i in (config.get("dual_attention_layers") or ()):
            for kind, tensor in fused(ours + "attn2.", ("to_q", "to_k", "to_v")).items():
                out[f"{block}x_block.attn2.qkv.{kind}"] = tensor
            pairs[f"{block}x_block.attn2.proj"] = f"{ours}attn2.to_out.0"
            for theirs, name in {"ln_q": "norm_q", "ln_k": "norm_k"}.items():
                if f"{ours}attn2.{name}.weight" in state:
                    out[f"{block}x_block.attn2.{theirs}.weight"] = take(f"{ours}attn2.{name}.weight")
    for theirs, name in pairs.items():
        for kind in ("weight", "bias"):
            out[f"{theirs}.{kind}"] = take(f"{name}.{kind}")
    for kind in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(take(f"norm_out.linear.{kind}"))
    missing = set(state) - used
    if missing:
        raise KeyError(f"no original name for {sorted(missing)[:5]}")
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def write_sd3_transformer_file(pipe, path: Path) -> Path:
    """An SD3.5 transformer alone in the original layout, as Stability's single files hold it."""
    from safetensors.torch import save_file

    tensors = sd3_original(pipe.transformer.state_dict(), pipe.transformer.config)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path
