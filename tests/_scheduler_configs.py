"""Scheduler configs that real checkpoints ship (their ``scheduler/scheduler_config.json``), and variants users set.

Values are copied from the published files; ``_class_name`` names the diffusers class, ``_diffusers_version`` is
dropped. Where a field is absent from a file, diffusers fills its default, as it does when loading the checkpoint.
``SET_TIMESTEPS`` holds the extra ``set_timesteps`` arguments a pipeline passes (LTX computes ``mu``).

Sources (Hugging Face hub, read 2026-12):

* CogVideoX-2b: huggingface.co/THUDM/CogVideoX-2b/blob/main/scheduler/scheduler_config.json (482 bytes).
* CogVideoX-5b: huggingface.co/THUDM/CogVideoX-5b/blob/main/scheduler/scheduler_config.json (482 bytes); its text
  was read from a fine-tune's verbatim copy (bertjiazheng/KoolCogVideoX-5b, differing only in
  ``_diffusers_version``); the size matches these values byte for byte.
* CogVideoX-5b with DPM: the CogVideo repository's ``inference/cli_demo.py`` recommends
  ``CogVideoXDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")`` for the 5b models.
* Wan 2.1 T2V 1.3B and 14B: huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers (and -14B-Diffusers)
  scheduler/scheduler_config.json (751 bytes each; the text below, formatted as diffusers writes it, is 751 bytes;
  the 14B file was read from FastVideo/FastWan2.1-T2V-14B-Diffusers' upload of it, also 751 bytes).
* Wan 2.2 T2V A14B: huggingface.co/Wan-AI/Wan2.2-T2V-A14B-Diffusers scheduler/scheduler_config.json (fields that
  differ from the UniPC defaults; ``time_shift_type``/``use_dynamic_shifting`` at their defaults).
* LTX-Video: huggingface.co/Lightricks/LTX-Video/blob/05be24f/scheduler/scheduler_config.json (419 bytes).
* HunyuanVideo: huggingface.co/hunyuanvideo-community/HunyuanVideo scheduler/scheduler_config.json (419 bytes, as
  also uploaded to hf-internal-testing/tiny-random-hunyuanvideo).
* SkyReels-V2 DF 1.3B/14B: the Wan UniPC file; the diffusers pipeline docs set ``flow_shift=8.0`` (T2V) or 5.0
  (I2V) with ``UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=...)``. (The exact published
  SkyReels file was not in the search index; these are the values its pipeline runs with.)

Variants (valid configs whose last step does not lower the noise, issue 12): UniPC flow with
``final_sigmas_type="sigma_min"``, DDIM with ``set_alpha_to_one=False`` and ``steps_offset=0``, Euler with
``final_sigmas_type="sigma_min"``, DPM++ with Karras sigmas or ``use_lu_lambdas`` and ``final_sigmas_type="sigma_min"``,
and diffusers' own DDIM ``test_betas`` config (``beta_end=0.2``: the last alpha-bar reaches 0).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHECKPOINTS", "SET_TIMESTEPS", "VARIANTS", "build"]

_COGVIDEOX: dict[str, Any] = {
    "_class_name": "CogVideoXDDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 3.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

_WAN21: dict[str, Any] = {
    "_class_name": "UniPCMultistepScheduler",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "disable_corrector": [],
    "dynamic_thresholding_ratio": 0.995,
    "final_sigmas_type": "zero",
    "flow_shift": 3.0,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "predict_x0": True,
    "prediction_type": "flow_prediction",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_p": None,
    "solver_type": "bh2",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "trained_betas": None,
    "use_beta_sigmas": False,
    "use_exponential_sigmas": False,
    "use_flow_sigmas": True,
    "use_karras_sigmas": False,
}

_FLOW_EULER_COMMON: dict[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "invert_sigmas": False,
    "max_image_seq_len": 4096,
    "num_train_timesteps": 1000,
    "use_beta_sigmas": False,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}

CHECKPOINTS: dict[str, dict[str, Any]] = {
    "cogvideox_2b": _COGVIDEOX,
    "cogvideox_5b": _COGVIDEOX | {"snr_shift_scale": 1.0},
    "cogvideox_5b_dpm": _COGVIDEOX | {"_class_name": "CogVideoXDPMScheduler", "snr_shift_scale": 1.0},
    "wan21_1.3b": _WAN21,
    "wan21_14b": _WAN21,
    "wan22_a14b": {
        "_class_name": "UniPCMultistepScheduler",
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "flow_shift": 3.0,
        "num_train_timesteps": 1000,
        "predict_x0": True,
        "prediction_type": "flow_prediction",
        "solver_order": 2,
        "solver_type": "bh2",
        "use_flow_sigmas": True,
        "final_sigmas_type": "zero",
        "lower_order_final": True,
        "timestep_spacing": "linspace",
    },
    "ltx_video": _FLOW_EULER_COMMON
    | {
        "base_image_seq_len": 1024,
        "base_shift": 0.95,
        "max_shift": 2.05,
        "shift": 1.0,
        "shift_terminal": 0.1,
        "use_dynamic_shifting": True,
    },
    "hunyuan_video": _FLOW_EULER_COMMON
    | {
        "base_image_seq_len": 256,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "shift": 7.0,
        "shift_terminal": None,
        "use_dynamic_shifting": False,
    },
    "skyreels_v2_df_t2v": _WAN21 | {"flow_shift": 8.0},
    "skyreels_v2_df_i2v": _WAN21 | {"flow_shift": 5.0},
}

VARIANTS: dict[str, dict[str, Any]] = {
    "unipc_flow_sigma_min": _WAN21 | {"final_sigmas_type": "sigma_min"},
    "ddim_no_alpha_one": {
        "_class_name": "DDIMScheduler",
        "prediction_type": "epsilon",
        "set_alpha_to_one": False,
        "steps_offset": 0,
        "clip_sample": False,
    },
    # diffusers' DDIMSchedulerTest.test_betas: alpha-bar underflows to 0 (beta_end 0.2: for t >= 959; 2.0: t >= 244).
    "ddim_test_betas_0.2": {
        "_class_name": "DDIMScheduler",
        "beta_start": 0.01,
        "beta_end": 0.2,
        "timestep_spacing": "trailing",
    },
    "ddim_test_betas_2": {"_class_name": "DDIMScheduler", "beta_start": 0.1, "beta_end": 2.0},
    "ddim_zero_snr": {
        "_class_name": "DDIMScheduler",
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
        "clip_sample": False,
    },
    "euler_sigma_min": {"_class_name": "EulerDiscreteScheduler", "final_sigmas_type": "sigma_min"},
    "dpmpp_karras": {
        "_class_name": "DPMSolverMultistepScheduler",
        "use_karras_sigmas": True,
        "final_sigmas_type": "sigma_min",
    },
    "dpmpp_lu_lambdas": {
        "_class_name": "DPMSolverMultistepScheduler",
        "use_lu_lambdas": True,
        "final_sigmas_type": "sigma_min",
    },
}

# Extra set_timesteps arguments the pipeline passes: LTX shifts by the token count (mu from its calculate_shift
# for a 1 x 8 x 8 token grid is about 0.95; any value exercises the path).
SET_TIMESTEPS: dict[str, dict[str, Any]] = {"ltx_video": {"mu": 0.95}}


def build(config: dict[str, Any]) -> Any:
    """The diffusers scheduler a config file describes (loaded the way ``from_pretrained`` loads it)."""
    import diffusers

    cls = getattr(diffusers, config["_class_name"])
    return cls.from_config({k: v for k, v in config.items() if k != "_class_name"})
