"""ropekit.hf.patch: a timed forward of a HF Llama (Llama-3-8B attention shapes: 32 q + 8 kv heads
x 128, 2 layers, small MLP and vocabulary, random weights) before and after patching, and the
rotation alone (HF's apply_rotary_pos_emb vs the patched one) on the same q/k. Medians.

    python bench/hf_patch.py [--seq 1024] [--dtype float32|bfloat16] [--repeat 20]
"""
import argparse
import statistics
import sys
import time

import torch
import transformers as T

import ropekit.hf as rh


def median_ms(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    config = T.LlamaConfig(vocab_size=1024, hidden_size=4096, intermediate_size=512, num_hidden_layers=2,
                           num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                           max_position_embeddings=8192,
                           rope_parameters={"rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0,
                                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 8192})
    config._attn_implementation = "sdpa"
    model = T.LlamaForCausalLM(config).eval().to(dtype)
    ids = torch.randint(0, config.vocab_size, (1, args.seq))
    modeling = sys.modules[type(model.model.layers[0].self_attn).__module__]

    q = torch.randn(1, 32, args.seq, 128, dtype=dtype)
    k = torch.randn(1, 8, args.seq, 128, dtype=dtype)
    position_ids = torch.arange(args.seq)[None]

    def forward():
        with torch.no_grad():
            model(ids, use_cache=False)

    def rotation():
        with torch.no_grad():
            cos, sin = model.model.rotary_emb(q, position_ids)
            modeling.apply_rotary_pos_emb(q, k, cos, sin)

    rows = {}
    rows["HF"] = (median_ms(forward, args.repeat), median_ms(rotation, args.repeat))
    rh.patch(model)
    rows["ropekit.hf.patch"] = (median_ms(forward, args.repeat), median_ms(rotation, args.repeat))
    rh.unpatch(model)
    print(f"torch {torch.__version__}, transformers {T.__version__}, {torch.get_num_threads()} threads, "
          f"seq {args.seq}, {args.dtype}")
    print(f"{'':18} {'forward (2 layers) ms':>22} {'rotary module + apply ms':>26}")
    for name, (fwd, rot) in rows.items():
        print(f"{name:18} {fwd:22.2f} {rot:26.3f}")


if __name__ == "__main__":
    main()
