"""Tiny random checkpoints in the mlx-community format, for tests.

Each architecture gets a config small enough to run in milliseconds on the
CPU; weights are random (seeded), saved bf16 and optionally quantized with
mlx-lm's own quantize_model, exactly as `mlx_lm.convert -q` would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map

VOCAB = 300  # 256 byte tokens + specials, padded

_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)

CONFIGS: dict[str, dict] = {
    "mixtral": dict(
        _COMMON,
        model_type="mixtral",
        intermediate_size=64,
        num_local_experts=8,
        num_experts_per_tok=2,
        rope_theta=10000.0,
    ),
    "qwen3_moe": dict(
        _COMMON,
        model_type="qwen3_moe",
        intermediate_size=128,
        num_experts=8,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        moe_intermediate_size=64,
        head_dim=16,
        rope_theta=10000.0,
        max_position_embeddings=512,
        norm_topk_prob=True,
    ),
    "qwen3_next": dict(
        _COMMON,
        model_type="qwen3_next",
        intermediate_size=128,
        linear_num_value_heads=4,
        linear_num_key_heads=2,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_conv_kernel_dim=4,
        num_experts=8,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        shared_expert_intermediate_size=64,
        mlp_only_layers=[],
        moe_intermediate_size=64,
        rope_theta=10000.0,
        partial_rotary_factor=0.25,
        max_position_embeddings=512,
        head_dim=16,
        full_attention_interval=2,
        num_hidden_layers=4,
    ),
    "qwen3_5_moe": dict(
        model_type="qwen3_5_moe",
        text_config=dict(
            _COMMON,
            model_type="qwen3_5_moe_text",
            intermediate_size=128,
            linear_num_value_heads=4,
            linear_num_key_heads=2,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_conv_kernel_dim=4,
            num_experts=8,
            num_experts_per_tok=2,
            shared_expert_intermediate_size=64,
            moe_intermediate_size=64,
            head_dim=16,
            full_attention_interval=2,
            num_hidden_layers=4,
            max_position_embeddings=512,
            rope_parameters={"rope_theta": 10000.0, "partial_rotary_factor": 0.25, "rope_type": "default"},
        ),
    ),
    "deepseek_v3": dict(
        _COMMON,
        model_type="deepseek_v3",
        intermediate_size=128,
        moe_intermediate_size=64,
        n_shared_experts=1,
        n_routed_experts=8,
        num_experts_per_tok=2,
        kv_lora_rank=32,
        q_lora_rank=48,
        qk_rope_head_dim=8,
        v_head_dim=16,
        qk_nope_head_dim=16,
        n_group=2,
        topk_group=1,
        first_k_dense_replace=1,
        num_key_value_heads=4,
        max_position_embeddings=512,
        rope_theta=10000.0,
    ),
    "olmoe": dict(
        _COMMON, model_type="olmoe", intermediate_size=64, num_experts=8, num_experts_per_tok=2, rope_theta=10000.0
    ),
    # 128-wide experts so every group size (32/64/128) quantizes them
    "qwen3_moe_wide": dict(
        _COMMON,
        model_type="qwen3_moe",
        hidden_size=128,
        intermediate_size=128,
        num_experts=8,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        moe_intermediate_size=128,
        head_dim=32,
        rope_theta=10000.0,
        max_position_embeddings=512,
        norm_topk_prob=True,
    ),
    "llama": dict(_COMMON, model_type="llama", intermediate_size=128, rope_theta=10000.0),
}

_T = dict(
    vocab_size=VOCAB, rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=512, rope_theta=10000.0
)

MOE_CONFIGS_DEEPSEEK_V3_TEXT = dict(CONFIGS["deepseek_v3"])

# Tiny configs of every mlx-lm module whose routed experts are a SwitchGLU or SwitchMLP,
# most taken from mlx-lm's tests/test_models.py, shrunk (vocab 300, hidden 64-128, 8 experts).
MOE_CONFIGS: dict[str, dict] = {
    **{k: CONFIGS[k] for k in ("mixtral", "qwen3_moe", "qwen3_next", "qwen3_5_moe", "deepseek_v3", "olmoe")},
    "Klear": dict(
        _T,
        model_type="Klear",
        hidden_size=64,
        num_hidden_layers=4,
        intermediate_size=64,
        num_attention_heads=4,
        attention_bias=False,
        mlp_only_layers=[0],
        num_experts=8,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        n_shared_experts=1,
        moe_intermediate_size=64,
        num_key_value_heads=2,
        norm_topk_prob=True,
    ),
    "afmoe": dict(
        _T,
        model_type="afmoe",
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        head_dim=16,
        layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
    ),
    "bailing_moe": dict(
        _T,
        model_type="bailing_moe",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_experts=8,
        num_shared_experts=1,
        norm_topk_prob=True,
        num_attention_heads=4,
        num_experts_per_tok=2,
        num_hidden_layers=3,
        num_key_value_heads=2,
        first_k_dense_replace=1,
    ),
    "bailing_moe_linear": dict(
        _T,
        model_type="bailing_moe_linear",
        hidden_size=64,
        num_hidden_layers=4,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_experts_per_tok=2,
        num_experts=8,
        norm_topk_prob=True,
        num_shared_experts=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        first_k_dense_replace=0,
        layer_group_size=2,
        group_norm_size=1,
    ),
    "bailing_hybrid": dict(
        _T,
        model_type="bailing_hybrid",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_experts=8,
        num_experts_per_tok=2,
        num_shared_experts=1,
        n_group=2,
        topk_group=1,
        first_k_dense_replace=1,
        layer_group_size=2,
        group_norm_size=1,
        routed_scaling_factor=1.0,
        head_dim=16,
        kv_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=16,
    ),
    "bailing_moe_v3": dict(
        _T,
        model_type="bailing_moe_v3",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        moe_shared_expert_intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_experts=8,
        num_experts_per_tok=2,
        num_shared_experts=1,
        first_k_dense_replace=1,
        n_group=2,
        topk_group=1,
        layer_group_size=2,
        head_dim=16,
        q_lora_rank=16,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=8,
        v_head_dim=16,
    ),
    # experts as a list of separate MLPs (no Switch layer): runs fully resident
    "dbrx": dict(
        model_type="dbrx",
        vocab_size=VOCAB,
        d_model=64,
        n_layers=3,
        n_heads=4,
        ffn_config={"ffn_hidden_size": 64, "moe_num_experts": 8, "moe_top_k": 2},
        attn_config={"kv_n_heads": 2, "clip_qkv": 8.0, "rope_theta": 10000},
    ),
    "deepseek": dict(
        _T,
        model_type="deepseek",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
    ),
    "deepseek_v2": dict(
        _T,
        model_type="deepseek_v2",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        qk_nope_head_dim=16,
        n_group=2,
        topk_group=1,
        rope_scaling={
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
    ),
    "deepseek_v32": dict(
        _T,
        model_type="deepseek_v32",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        n_routed_experts=8,
        n_group=2,
        topk_group=1,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        qk_nope_head_dim=16,
        index_n_heads=2,
        index_head_dim=16,
        index_topk=8,
    ),
    "deepseek_v41": dict(
        _T,
        model_type="deepseek_v41",
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        head_dim=32,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        o_groups=2,
        o_lora_rank=16,
        moe_intermediate_size=64,
        n_routed_experts=8,
        num_experts_per_tok=2,
        sliding_window=32,
        index_n_heads=2,
        index_head_dim=16,
        index_topk=8,
        hc_mult=2,
        hc_sinkhorn_iters=2,
    ),
    "dots1": dict(
        _T,
        model_type="dots1",
        hidden_size=64,
        num_hidden_layers=3,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        first_k_dense_replace=1,
        moe_intermediate_size=64,
        n_routed_experts=8,
        n_shared_experts=1,
        norm_topk_prob=True,
        num_experts_per_tok=2,
        routed_scaling_factor=1.0,
    ),
    "ernie4_5_moe": dict(
        _T,
        model_type="ernie4_5_moe",
        hidden_size=64,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=3,
        use_bias=False,
        moe_num_experts=8,
        moe_k=2,
        moe_intermediate_size=64,
        moe_layer_start_index=1,
        moe_num_shared_experts=1,
    ),
    "exaone_moe": dict(
        _T,
        model_type="exaone_moe",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=8,
        num_experts_per_tok=2,
        num_shared_experts=1,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        sliding_window=32,
        layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        is_moe_layer=[False, True, True, True],
    ),
    "gemma4_text": dict(
        _T,
        model_type="gemma4_text",
        hidden_size=64,
        num_hidden_layers=4,
        intermediate_size=64,
        num_attention_heads=4,
        head_dim=16,
        global_head_dim=32,
        num_key_value_heads=1,
        sliding_window=8,
        sliding_window_pattern=2,
        num_kv_shared_layers=0,
        final_logit_softcapping=30.0,
        vocab_size_per_layer_input=VOCAB,
        hidden_size_per_layer_input=16,
        enable_moe_block=True,
        num_experts=8,
        top_k_experts=2,
        moe_intermediate_size=64,
        layer_types=["sliding_attention", "full_attention"] * 2,
        rope_parameters={
            "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0},
            "sliding_attention": {"rope_theta": 10000.0},
        },
    ),
    "glm4_moe": dict(
        _T,
        model_type="glm4_moe",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        norm_topk_prob=True,
        num_attention_heads=4,
        n_group=2,
        head_dim=16,
        topk_group=1,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=1.0,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        num_hidden_layers=3,
        num_key_value_heads=2,
        rope_scaling=None,
        use_qk_norm=True,
        attention_bias=False,
        partial_rotary_factor=0.5,
    ),
    "glm4_moe_lite": dict(
        _T,
        model_type="glm4_moe_lite",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=1.0,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=16,
        topk_method="noaux_tc",
        scoring_func="sigmoid",
        norm_topk_prob=True,
        n_group=1,
        topk_group=1,
        num_experts_per_tok=2,
        moe_layer_freq=1,
        first_k_dense_replace=1,
        rope_scaling=None,
        attention_bias=False,
        partial_rotary_factor=1.0,
    ),
    "gpt_oss": dict(
        _T,
        model_type="gpt_oss",
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=8,
        num_experts_per_tok=2,
        sliding_window=32,
        layer_types=["sliding_attention", "full_attention"],
    ),
    "granitemoe": dict(
        _T,
        model_type="granitemoe",
        hidden_size=64,
        num_hidden_layers=3,
        intermediate_size=64,
        num_attention_heads=4,
        logits_scaling=1.0,
        attention_multiplier=1.0,
        embedding_multiplier=1.0,
        residual_multiplier=1.0,
        num_key_value_heads=2,
        attention_bias=False,
        num_local_experts=8,
        num_experts_per_tok=2,
    ),
    "granitemoehybrid": dict(
        _T,
        model_type="granitemoehybrid",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=False,
        embedding_multiplier=1.0,
        attention_multiplier=1.0,
        logits_scaling=1.0,
        residual_multiplier=1.0,
        num_local_experts=8,
        num_experts_per_tok=2,
        shared_intermediate_size=64,
        mamba_n_heads=8,
        mamba_d_head=16,
        mamba_proj_bias=False,
        mamba_d_state=16,
        mamba_d_conv=4,
        mamba_n_groups=1,
        mamba_conv_bias=False,
        layer_types=["mamba", "attention", "mamba", "attention"],
    ),
    "hunyuan": dict(
        _T,
        model_type="hunyuan",
        hidden_size=64,
        attention_bias=False,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=4,
        num_key_value_heads=2,
        moe_topk=2,
        num_experts=8,
        num_shared_expert=1,
        use_mixed_mlp_moe=True,
        use_qk_norm=True,
        rope_scaling={"alpha": 1000.0, "factor": 1.0, "type": "dynamic"},
        use_cla=True,
        cla_share_factor=2,
    ),
    "jamba": dict(
        _T,
        model_type="jamba",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_layer_offset=1,
        attn_layer_period=2,
        expert_layer_offset=1,
        expert_layer_period=2,
        mamba_d_conv=4,
        mamba_d_state=16,
        mamba_expand=2,
        num_experts=8,
        num_experts_per_tok=2,
    ),
    "kimi_linear": dict(
        _T,
        model_type="kimi_linear",
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        head_dim=16,
        linear_attn_config={"num_heads": 4, "head_dim": 16, "kda_layers": [2]},
        model_max_length=512,
        num_experts=8,
        num_experts_per_token=2,
        moe_intermediate_size=64,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=8,
        v_head_dim=16,
        first_k_dense_replace=1,
        num_shared_experts=1,
    ),
    "laguna": dict(
        _T,
        model_type="laguna",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=4,
        partial_rotary_factor=0.5,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=64,
        moe_routed_scaling_factor=2.5,
        moe_router_score_func="sqrtsoftplus",
        layer_types=["full_attention", "sliding_attention", "sliding_attention"],
        mlp_layer_types=["dense", "sparse", "sparse"],
        num_attention_heads_per_layer=[4, 4, 4],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0},
        },
    ),
    "lfm2_moe": dict(
        _T,
        model_type="lfm2_moe",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        norm_eps=1e-5,
        full_attn_idxs=[0, 2],
        conv_bias=True,
        conv_L_cache=3,
        moe_intermediate_size=64,
        num_dense_layers=1,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        use_expert_bias=True,
    ),
    "llama4": dict(
        model_type="llama4",
        text_config=dict(
            _T,
            attention_bias=False,
            attention_chunk_size=8,
            head_dim=16,
            hidden_size=64,
            interleave_moe_layer_step=1,
            intermediate_size=64,
            intermediate_size_mlp=64,
            model_type="llama4",
            num_attention_heads=4,
            num_experts_per_tok=1,
            num_hidden_layers=4,
            num_key_value_heads=2,
            num_local_experts=8,
            rope_scaling=None,
            use_qk_norm=True,
        ),
    ),
    "longcat_flash": dict(
        _T,
        model_type="longcat_flash",
        attention_method="MLA",
        zero_expert_type="identity",
        hidden_size=64,
        ffn_hidden_size=64,
        moe_topk=2,
        expert_ffn_hidden_size=64,
        n_routed_experts=8,
        zero_expert_num=2,
        num_layers=2,
        num_hidden_layers=2,
        num_attention_heads=4,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=8,
        routed_scaling_factor=1.0,
        mla_scale_q_lora=True,
        mla_scale_kv_lora=True,
        attention_bias=False,
    ),
    "mellum": dict(
        _T,
        model_type="mellum",
        hidden_size=64,
        num_hidden_layers=3,
        intermediate_size=64,
        num_attention_heads=4,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        num_key_value_heads=2,
        head_dim=16,
        norm_topk_prob=True,
        sliding_window=32,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            t: {"rope_theta": 10000.0, "rope_type": "default"} for t in ("sliding_attention", "full_attention")
        },
    ),
    "mimo_v2_flash": dict(
        _T,
        model_type="mimo_v2_flash",
        num_experts_per_tok=2,
        hybrid_layer_pattern=[0, 1, 0],
        moe_layer_freq=[0, 1, 1],
        add_swa_attention_sink_bias=True,
        add_full_attention_sink_bias=False,
        sliding_window_size=32,
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=None,
        topk_method="noaux_tc",
        scoring_func="sigmoid",
        norm_topk_prob=True,
        n_group=2,
        topk_group=1,
        layernorm_epsilon=1e-5,
        swa_rope_theta=10000.0,
        swa_num_attention_heads=4,
        swa_num_key_value_heads=2,
        head_dim=16,
        v_head_dim=16,
        swa_head_dim=16,
        swa_v_head_dim=16,
        partial_rotary_factor=0.5,
    ),
    "minimax": dict(
        _T,
        model_type="minimax",
        hidden_size=64,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts_per_tok=2,
        num_local_experts=8,
        shared_intermediate_size=64,
        num_hidden_layers=3,
        rotary_dim=8,
    ),
    "minimax_m3_vl": dict(
        model_type="minimax_m3_vl",
        text_config=dict(
            _T,
            model_type="minimax_m3",
            hidden_size=64,
            intermediate_size=64,
            dense_intermediate_size=64,
            shared_intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_hidden_layers=3,
            num_local_experts=8,
            num_experts_per_tok=2,
            head_dim=16,
        ),
    ),
    "mistral4": dict(
        _T,
        model_type="mistral4",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=1.0,
        kv_lora_rank=16,
        q_lora_rank=16,
        norm_topk_prob=True,
        topk_group=1,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        n_group=1,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=16,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 128,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "llama_4_scaling_beta": 0.1,
        },
    ),
    "muse_spark": dict(
        model_type="muse_spark",
        audio_config={"out_hidden_size": 64},
        text_config=dict(
            _T,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            num_hidden_layers=2,
            post_norm_eps=1e-5,
            rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
            layer_rope_theta=[10000.0, 10000.0],
            layer_types=["sliding_attention", "full_attention"],
            sliding_window=32,
            final_logit_softcapping=30.0,
            output_multiplier=1.0,
            num_local_experts=8,
            num_experts_per_tok=2,
            moe_hidden_size=64,
            moe_intermediate_size=64,
            mlp_layer_types=["sparse", "sparse"],
        ),
    ),
    "nemotron_h": dict(
        _T,
        model_type="nemotron_h",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=False,
        mamba_num_heads=4,
        mamba_head_dim=16,
        mamba_proj_bias=False,
        ssm_state_size=16,
        conv_kernel=3,
        n_groups=2,
        time_step_limit=[1.0, 2.0],
        mlp_bias=False,
        layer_norm_epsilon=1e-5,
        use_bias=False,
        use_conv_bias=True,
        residual_in_fp32=True,
        hybrid_override_pattern=["*", "E", "M", "E"],
        n_routed_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        moe_shared_expert_intermediate_size=64,
        n_group=1,
        topk_group=1,
        norm_topk_prob=True,
        routed_scaling_factor=1.0,
    ),
    "phimoe": dict(
        _T,
        model_type="phimoe",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_local_experts=8,
        num_experts_per_tok=2,
    ),
    "phixtral": dict(
        model_type="phixtral",
        num_vocab=VOCAB,
        model_dim=64,
        num_heads=4,
        num_layers=3,
        rotary_dim=8,
        num_experts_per_tok=2,
        num_local_experts=8,
    ),
    "qwen2_moe": dict(
        _T,
        model_type="qwen2_moe",
        hidden_size=64,
        num_hidden_layers=3,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts_per_tok=2,
        num_experts=8,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=64,
    ),
    "step3p5": dict(
        _T,
        model_type="step3p5",
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_attention_groups=2,
        head_dim=16,
        intermediate_size=64,
        rope_theta=[10000.0] * 3,
        sliding_window=32,
        layer_types=["full_attention", "sliding_attention", "full_attention"],
        partial_rotary_factors=[0.5, 1.0, 0.5],
        attention_other_setting={"num_attention_heads": 4, "num_attention_groups": 2},
        use_head_wise_attn_gate=True,
        moe_num_experts=8,
        moe_top_k=2,
        moe_intermediate_size=64,
        share_expert_dim=64,
        moe_layers_enum="1,2",
    ),
    "kimi_k3": dict(
        model_type="kimi_k3",
        text_config=dict(
            _T,
            model_type="kimi_linear",
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=64,
            num_experts=8,
            num_experts_per_token=2,
            moe_intermediate_size=64,
            first_k_dense_replace=1,
            num_shared_experts=1,
            head_dim=16,
            kv_lora_rank=16,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=16,
            linear_attn_config={"num_heads": 4, "head_dim": 16, "kda_layers": [2], "short_conv_kernel_size": 4},
        ),
    ),
    "glm_moe_dsa": dict(
        _T,
        model_type="glm_moe_dsa",
        hidden_size=64,
        index_head_dim=16,
        index_n_heads=2,
        index_topk=8,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=1.0,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        qk_nope_head_dim=16,
        topk_method="noaux_tc",
        scoring_func="sigmoid",
        norm_topk_prob=True,
        n_group=1,
        topk_group=1,
        num_experts_per_tok=2,
        moe_layer_freq=1,
        first_k_dense_replace=1,
        attention_bias=False,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
    ),
    "kimi_k25": dict(model_type="kimi_k25", text_config=dict(MOE_CONFIGS_DEEPSEEK_V3_TEXT)),
    "kimi_vl": dict(model_type="kimi_vl", text_config=dict(MOE_CONFIGS_DEEPSEEK_V3_TEXT)),
    "longcat_flash_ngram": dict(
        _T,
        model_type="longcat_flash_ngram",
        hidden_size=64,
        ffn_hidden_size=64,
        moe_topk=2,
        expert_ffn_hidden_size=64,
        n_routed_experts=8,
        zero_expert_num=2,
        num_layers=2,
        num_hidden_layers=2,
        num_attention_heads=4,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=8,
        routed_scaling_factor=1.0,
        mla_scale_q_lora=True,
        mla_scale_kv_lora=True,
        ngram_vocab_size_ratio=2,
        emb_neighbor_num=2,
        emb_split_num=2,
    ),
    "solar_open": dict(
        _T,
        model_type="solar_open",
        hidden_size=64,
        intermediate_size=64,
        moe_intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=1.0,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        norm_topk_prob=True,
        partial_rotary_factor=1.0,
    ),
    "qwen3_vl_moe": dict(
        model_type="qwen3_vl_moe",
        text_config=dict(
            _T,
            model_type="qwen3_moe",
            hidden_size=64,
            num_hidden_layers=3,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            num_experts_per_tok=2,
            num_experts=8,
            moe_intermediate_size=64,
            norm_topk_prob=True,
        ),
    ),
}

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_model(arch: str, seed: int = 0):
    from engine.model_classes import model_classes

    config = json.loads(json.dumps(CONFIGS.get(arch) or MOE_CONFIGS[arch]))
    model_class, args_class = model_classes(config)
    mx.random.seed(seed)
    model = model_class(args_class.from_dict(config))
    # Random uniform init gives near-uniform routers; widen them so routing varies.
    params = tree_map(lambda a: a * 4 if a.ndim == 2 else a, model.parameters())
    model.update(params)
    model.update(tree_map(lambda a: a.astype(mx.bfloat16) if a.dtype == mx.float32 else a, model.parameters()))
    mx.eval(model.parameters())
    return model, config


# Expert formats: name -> how write_checkpoint stores the model (quantization or dtype, layout).
FORMATS: dict[str, dict] = {
    **{f"affine-{b}bit-g64": dict(mode="affine", bits=b, group_size=64) for b in (2, 3, 4, 5, 6, 8)},
    "affine-4bit-g32": dict(mode="affine", bits=4, group_size=32),
    "affine-4bit-g128": dict(mode="affine", bits=4, group_size=128),
    "mxfp4": dict(mode="mxfp4", bits=4, group_size=32),
    "nvfp4": dict(mode="nvfp4", bits=4, group_size=16),
    "nvfp4-global-scale": dict(mode="nvfp4", bits=4, group_size=16, global_scale=True),
    "mxfp8": dict(mode="mxfp8", bits=8, group_size=32),
    "float16": dict(dtype="float16"),
    "bfloat16": dict(dtype="bfloat16"),
    "float32": dict(dtype="float32"),
    # mixed precision as mlx-lm's recipes write it: per-module overrides in config.json
    "mixed-8bit-layer0-4bit-rest": dict(mode="affine", bits=4, group_size=64, mixed={0: 8}),
    # mlx_lm.convert --quant-predicate mixed_3_6: down_proj at 6 bits in some layers, 3 elsewhere
    "mixed_3_6-recipe": dict(mode="affine", bits=3, group_size=64, recipe="mixed_3_6"),
    # the raw Hugging Face layout: one bf16 tensor per expert, stacked by mlx-lm's sanitize
    "per-expert-tensors": dict(dtype="bfloat16", per_expert=True),
    # Hugging Face's fused layout (qwen3.5: experts.gate_up_proj [E, 2I, H]), model.language_model prefix
    "fused-gate-up": dict(dtype="bfloat16", fused=True),
}

# Hugging Face names of per-expert projections, per architecture (sanitize maps them back)
_HF_PROJ = {"mixtral": {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}}


def write_checkpoint(
    path: Path,
    arch: str,
    *,
    bits: int | None = 4,
    group_size: int = 32,
    shards: int = 1,
    seed: int = 0,
    fmt: str | None = None,
) -> Path:
    """Write a tiny random `arch` checkpoint to `path`, as mlx-lm saves it: quantized with
    `bits`/`group_size` (None: unquantized bf16), or in one of FORMATS when `fmt` is given."""
    from mlx_lm.utils import quantize_model, save_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, config = build_model(arch, seed)
    spec = FORMATS[fmt] if fmt else ({} if bits is None else dict(bits=bits, group_size=group_size))
    if "dtype" in spec:
        dtype = getattr(mx, spec["dtype"])
        model.update(
            tree_map(lambda a: a.astype(dtype) if mx.issubdtype(a.dtype, mx.floating) else a, model.parameters())
        )
    elif spec:
        mixed = spec.get("mixed", {})

        def predicate(name, module):
            layer = re.search(r"(?:^|\.)(\d+)\.", name)
            if mixed and layer and int(layer.group(1)) in mixed and "switch_mlp" in name:
                return {
                    "group_size": spec["group_size"],
                    "bits": mixed[int(layer.group(1))],
                    "mode": spec.get("mode", "affine"),
                }
            return True

        if "recipe" in spec:
            from mlx_lm.convert import mixed_quant_predicate_builder

            predicate = mixed_quant_predicate_builder(spec["recipe"], model, spec["group_size"])
        model, config = quantize_model(
            model,
            config,
            spec["group_size"],
            spec["bits"],
            mode=spec.get("mode", "affine"),
            global_scale=spec.get("global_scale", False),
            quant_predicate=predicate if mixed or "recipe" in spec else None,
        )
    weights = dict(tree_flatten(model.parameters()))
    if spec.get("per_expert"):
        weights = _unstack_experts(weights, _HF_PROJ.get(arch, {}))
    if spec.get("fused"):
        weights = _fuse_gate_up(weights)
    names = sorted(weights)
    if shards == 1:
        mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    else:
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            mx.save_safetensors(str(path / fname), {n: weights[n] for n in part}, metadata={"format": "mlx"})
            weight_map.update({n: fname for n in part})
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, indent=1)
        )
    save_config(config, path / "config.json")
    write_tokenizer(path)
    return path


def _unstack_experts(weights: dict, hf_names: dict[str, str]) -> dict:
    """switch_mlp.<proj>.<part> [E, ...] -> experts.<e>.<hf proj>.<part>, one tensor per expert."""
    out = {}
    for name, value in weights.items():
        m = re.match(r"(.*)\.switch_mlp\.(gate_proj|up_proj|down_proj)\.(\w+)$", name)
        if not m:
            out[name] = value
            continue
        for e in range(value.shape[0]):
            out[f"{m[1]}.experts.{e}.{hf_names.get(m[2], m[2])}.{m[3]}"] = value[e]
    return out


def _fuse_gate_up(weights: dict) -> dict:
    """Qwen3.5's Hugging Face layout: experts.gate_up_proj [E, 2I, H] and experts.down_proj,
    under model.language_model (mlx-lm's sanitize splits and renames them)."""
    out = {}
    for name, value in weights.items():
        name = name.replace("language_model.model.", "model.language_model.")
        if ".switch_mlp.up_proj." in name:
            continue
        if ".switch_mlp.gate_proj." in name:
            up = weights[name.replace("model.language_model.", "language_model.model.").replace("gate_proj", "up_proj")]
            out[name.replace("switch_mlp.gate_proj.weight", "experts.gate_up_proj")] = mx.concatenate(
                [value, up], axis=1
            )
        elif ".switch_mlp.down_proj." in name:
            out[name.replace("switch_mlp.down_proj.weight", "experts.down_proj")] = value
        else:
            out[name] = value
    return out


def write_tokenizer(path: Path) -> None:
    """A byte-level BPE tokenizer with no merges (one token per byte) and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens(specials)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|im_end|>",
                "bos_token": None,
                "pad_token": "<|endoftext|>",
                "chat_template": CHAT_TEMPLATE,
                "model_max_length": 4096,
            }
        )
    )


def resident_oracle(path: Path, dtype: mx.Dtype = mx.float32):
    """mlx-lm's own load of the checkpoint, fully in memory, half-precision floats cast to
    `dtype` (default float32: what the engine computes in on the CPU), as the engine's
    --compute-dtype casts them."""
    from mlx_lm.utils import load

    from engine.compute_dtype import cast_half_floats

    model, tokenizer = load(str(path))
    cast_half_floats(model, dtype)
    mx.eval(model.parameters())
    return model, tokenizer


def expert_param_bytes(model: nn.Module) -> int:
    return sum(v.nbytes for k, v in tree_flatten(model.parameters()) if "switch_mlp" in k)
