"""Real config.json contents (subsets) used as fixtures; sources in each comment."""

# deepseek-ai/DeepSeek-V3 (== DeepSeek-R1) config.json, as quoted in a public test file
# (code-search id 1570491832, "config_Deepseek_R1"); 671B total / 37B active per the model card.
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "first_k_dense_replace": 3, "hidden_size": 7168, "intermediate_size": 18432,
    "kv_lora_rank": 512, "max_position_embeddings": 163840, "moe_intermediate_size": 2048,
    "moe_layer_freq": 1, "n_routed_experts": 256, "n_shared_experts": 1,
    "num_attention_heads": 128, "num_experts_per_tok": 8, "num_hidden_layers": 61,
    "num_key_value_heads": 128, "num_nextn_predict_layers": 1, "q_lora_rank": 1536,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                            "quant_method": "fp8", "weight_block_size": [128, 128]},
}  # fmt: skip

# openai/gpt-oss-20b config.json (https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json,
# as carried verbatim in the catalog v2 models.json); 20.9B total / 3.6B active (model card).
GPT_OSS_20B = {
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True,
    "experts_per_token": 4, "head_dim": 64, "hidden_size": 2880, "intermediate_size": 2880,
    "layer_types": ["sliding_attention", "full_attention"] * 12,
    "max_position_embeddings": 131072, "num_attention_heads": 64, "num_experts_per_tok": 4,
    "num_hidden_layers": 24, "num_key_value_heads": 8, "num_local_experts": 32,
    "sliding_window": 128, "tie_word_embeddings": False, "vocab_size": 201088,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn",
        "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
}  # fmt: skip

# Qwen/Qwen3-30B-A3B (code-search id 66504138143, "QWEN3_MOE"); 30.5B total / 3.3B active.
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "head_dim": 128,
    "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
    "mlp_only_layers": [], "decoder_sparse_step": 1, "num_attention_heads": 32,
    "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
    "num_key_value_heads": 4, "tie_word_embeddings": False, "vocab_size": 151936,
    "max_position_embeddings": 40960,
}  # fmt: skip

# google/gemma-3-27b-it config.json as transcribed in a transformers-based test (code-search
# id 1323971974, gemma3_27b_config), vocab_size 262208 as in the HF file; 27.4B (model card).
GEMMA3_27B = {
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
    "text_config": {
        "head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
        "max_position_embeddings": 131072, "model_type": "gemma3_text",
        "num_attention_heads": 32, "num_hidden_layers": 62, "num_key_value_heads": 16,
        "query_pre_attn_scalar": 168, "sliding_window": 1024, "sliding_window_pattern": 6,
        "vocab_size": 262208,
    },
    "torch_dtype": "bfloat16",
    "vision_config": {
        "hidden_act": "gelu_pytorch_tanh", "hidden_size": 1152, "image_size": 896,
        "intermediate_size": 4304, "model_type": "siglip_vision_model",
        "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 27, "patch_size": 14,
    },
}  # fmt: skip

# meta-llama/Llama-4-Scout-17B-16E config (code-search id 41112263523, printed Llama4Config with
# a per-module count: 109,676,279,296 parameters).
LLAMA4_SCOUT = {
    "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
    "text_config": {
        "attention_chunk_size": 8192, "head_dim": 128, "hidden_size": 5120,
        "interleave_moe_layer_step": 1, "intermediate_size": 8192,
        "intermediate_size_mlp": 16384, "max_position_embeddings": 262144,
        "model_type": "llama4_text", "moe_layers": list(range(48)),
        "no_rope_layers": [1, 1, 1, 0] * 12, "num_attention_heads": 40,
        "num_experts_per_tok": 1, "num_hidden_layers": 48, "num_key_value_heads": 8,
        "num_local_experts": 16, "torch_dtype": "bfloat16", "use_qk_norm": True,
        "vocab_size": 202048,
    },
    "tie_word_embeddings": False,
    "vision_config": {
        "hidden_act": "gelu", "hidden_size": 1408, "image_size": 336, "intermediate_size": 5632,
        "model_type": "llama4_vision_model", "num_attention_heads": 16, "num_channels": 3,
        "num_hidden_layers": 34, "patch_size": 14, "projector_input_dim": 4096,
        "projector_output_dim": 4096, "vision_output_dim": 4096,
    },
}  # fmt: skip
