"""Tiny random-weight diffusers video pipelines built offline from configs (shared by the pipeline tests).

Every builder seeds torch locally, so a pipeline's weights do not depend on test order, and is cached per
session: tests must leave the pipeline as they found it (stabilize handles are undone in ``finally``).
Sizes follow the diffusers fast tests (16x16 or 32x32 pixels, 9 frames, 2 steps).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "BUILDERS",
    "build",
    "call_kwargs",
    "tiny_tokenizer",
]

_WORDS = ["dance", "monkey", "a", "cat", "on", "the", "moon", "negative", "red", "ball", "prompt"]


def tiny_tokenizer() -> Any:
    """A WordLevel tokenizer over a dozen words, wrapped for transformers (saves and loads offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=64
    )


def _t5(d_model: int = 32, *, umt5: bool = False) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kw = dict(
        vocab_size=len(_WORDS) + 3,
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(UMT5Config(**kw)) if umt5 else T5EncoderModel(T5Config(**kw))


def _wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _wan_transformer_kwargs() -> dict[str, Any]:
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def _unipc() -> Any:
    from diffusers import UniPCMultistepScheduler

    # What Wan and SkyReels checkpoints ship: UniPC on flow sigmas.
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)


def _wan_family(cls_name: str, transformer: Callable[[], Any], scheduler: Callable[[], Any] = _unipc) -> Any:
    """A tiny Wan-family pipeline of class ``cls_name`` (Wan T2V/I2V and SkyReels-V2 DF share the parts)."""
    import diffusers

    torch.manual_seed(0)
    return getattr(diffusers, cls_name)(
        tokenizer=tiny_tokenizer(),
        text_encoder=_t5(umt5=True),
        vae=_wan_vae(),
        scheduler=scheduler(),
        transformer=transformer(),
    )


def _wan_transformer(**overrides: Any) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(**(_wan_transformer_kwargs() | overrides))


def wan() -> Any:
    return _wan_family("WanPipeline", _wan_transformer)


def wan_i2v() -> Any:
    """Wan 2.2-style image-to-video (no CLIP image encoder): the image latents join the channels."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return _wan_family(
        "WanImageToVideoPipeline",
        lambda: _wan_transformer(in_channels=36),
        lambda: FlowMatchEulerDiscreteScheduler(shift=7.0),
    )


def _skyreels_transformer() -> Any:
    from diffusers import SkyReelsV2Transformer3DModel

    return SkyReelsV2Transformer3DModel(**_wan_transformer_kwargs())


def skyreels_df() -> Any:
    return _wan_family("SkyReelsV2DiffusionForcingPipeline", _skyreels_transformer)


def skyreels_df_i2v() -> Any:
    return _wan_family("SkyReelsV2DiffusionForcingImageToVideoPipeline", _skyreels_transformer)


def skyreels_df_v2v() -> Any:
    return _wan_family("SkyReelsV2DiffusionForcingVideoToVideoPipeline", _skyreels_transformer)


def _ltx_components() -> dict[str, Any]:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    return dict(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_t5(),
        tokenizer=tiny_tokenizer(),
    )


def ltx() -> Any:
    from diffusers import LTXPipeline

    torch.manual_seed(0)
    return LTXPipeline(**_ltx_components())


def ltx_condition() -> Any:
    from diffusers import LTXConditionPipeline

    torch.manual_seed(0)
    return LTXConditionPipeline(**_ltx_components())


def cogvideox() -> Any:
    """CogVideoX-5b style: CogVideoXDPMScheduler with v-prediction (the 2b checkpoint ships DDIM)."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDPMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    scheduler = CogVideoXDPMScheduler(prediction_type="v_prediction", timestep_spacing="trailing")
    return CogVideoXPipeline(
        tokenizer=tiny_tokenizer(), text_encoder=_t5(), vae=vae, transformer=transformer, scheduler=scheduler
    )


def hunyuan() -> Any:
    """HunyuanVideo with a tiny Llama and CLIP text encoder (the stabilize tests pass prompt embeddings)."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    vocab = len(_WORDS) + 3
    text = dict(bos_token_id=0, eos_token_id=1, pad_token_id=0, vocab_size=vocab, intermediate_size=37)
    llama = LlamaModel(
        LlamaConfig(hidden_size=16, num_attention_heads=4, head_dim=4, num_hidden_layers=2, **text)
    )
    clip = CLIPTextModel(
        CLIPTextConfig(hidden_size=8, num_attention_heads=4, num_hidden_layers=2, projection_dim=8, **text)
    )
    return HunyuanVideoPipeline(
        text_encoder=llama,
        tokenizer=tiny_tokenizer(),
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=clip,
        tokenizer_2=tiny_tokenizer(),
    )


BUILDERS = {
    "wan": wan,
    "wan_i2v": wan_i2v,
    "ltx": ltx,
    "ltx_condition": ltx_condition,
    "cogvideox": cogvideox,
    "hunyuan": hunyuan,
    "skyreels_df": skyreels_df,
    "skyreels_df_i2v": skyreels_df_i2v,
    "skyreels_df_v2v": skyreels_df_v2v,
}


@functools.cache
def build(name: str) -> Any:
    """The named tiny pipeline on the CPU, progress bars off (cached: do not leave it modified)."""
    pipe = BUILDERS[name]()
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()  # built from configs, so in training mode: dropout would make runs differ
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(seed: int = 0, size: int = 16) -> Any:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(arr)


def call_kwargs(name: str, *, seed: int = 0) -> dict[str, Any]:
    """Arguments of a small, fast, deterministic call of the named pipeline (latent output)."""
    g = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = dict(generator=g, num_inference_steps=2, output_type="latent")
    if name == "wan":
        return common | dict(
            prompt="a cat",
            negative_prompt="negative",
            height=16,
            width=16,
            num_frames=9,
            max_sequence_length=8,
        )
    if name == "wan_i2v":
        return common | dict(
            image=_image(seed),
            prompt="a cat",
            negative_prompt="negative",
            height=16,
            width=16,
            num_frames=9,
            max_sequence_length=8,
        )
    if name in ("ltx", "ltx_condition"):
        kw = common | dict(
            prompt="a cat", negative_prompt="", height=32, width=32, num_frames=9, max_sequence_length=8
        )
        kw["guidance_scale"] = 3.0
        if name == "ltx_condition":
            from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

            # One condition at frame 0 (lerped into the latents) and one later (extra prepended tokens).
            kw["conditions"] = [
                LTXVideoCondition(image=_image(seed, 32), frame_index=0),
                LTXVideoCondition(image=_image(seed + 1, 32), frame_index=8),
            ]
        return kw
    if name == "cogvideox":
        return common | dict(
            prompt="a cat", negative_prompt="", height=16, width=16, num_frames=9, max_sequence_length=16
        )
    if name == "hunyuan":
        ge = torch.Generator().manual_seed(1000 + seed)
        return common | dict(
            prompt_embeds=torch.randn(1, 6, 16, generator=ge),
            pooled_prompt_embeds=torch.randn(1, 8, generator=ge),
            prompt_attention_mask=torch.ones(1, 6, dtype=torch.long),
            height=16,
            width=16,
            num_frames=9,
            guidance_scale=4.5,
        )
    if name.startswith("skyreels_df"):
        kw = common | dict(
            prompt="a cat",
            negative_prompt="negative",
            height=16,
            width=16,
            num_frames=9,
            max_sequence_length=8,
            causal_block_size=1,
        )
        if name == "skyreels_df_i2v":
            kw["image"] = _image(seed)
        if name == "skyreels_df_v2v":
            kw |= dict(video=[_image(seed + k) for k in range(5)], overlap_history=5, base_num_frames=9)
        return kw
    raise KeyError(name)
