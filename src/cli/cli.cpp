// Command dispatch, help texts and `ropekit presets`.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "presets.hpp"
#include "ropekit/error.hpp"
#include "ropekit/version.hpp"

namespace ropekit::cli {

const char* const kMainHelp = R"(ropekit - rotary positional embeddings: inspect, verify and benchmark

usage: ropekit <command> [arguments]   (ropekit <command> --help for details)

commands:
  info     show a RoPE spec, its attention factor and what the scaling does to every pair
           e.g. ropekit info llama3.1-8b --plot llama31.svg
  presets  list the built-in model presets
           e.g. ropekit presets --json
  verify   check every kernel path of this build against a float64 reference
           e.g. ropekit verify phi3-mini-128k
  bench    time apply_rope on a model's head configuration against memcpy
           e.g. ropekit bench llama3-8b --prefill 1024

exit status: 0 success, 1 a check failed (verify), 2 a bad argument or input file
integer flags take a decimal integer in a range (contexts and --seq-len at most 2^31 - 1); the error
for any other value names the flag and the range
)";

const char* const kInfoHelp = R"(usage: ropekit info <preset | config.json | spec flags> [--seq-len N] [--layer N] [--json] [--plot FILE.svg]

What a RoPE spec rotates with: the spec, the attention factor folded into cos and sin, and per pair
i the inverse frequency, the wavelength 2*pi/inv_freq in tokens, the unscaled (original)
wavelength, their ratio and the regime: extrapolated (frequency unchanged), interpolated (divided by
the full factor), blended (in between), constant / removed (truncated basis). Multi-axis specs add
the position axis that turns each pair: t / h / w (M-RoPE), 0 / 1 (axial 2-D).

The spec comes from one of:
  <preset>               a built-in preset (see ropekit presets), e.g. ropekit info llama3.1-8b
  <config.json>          a HuggingFace config.json, e.g. ropekit info ./Llama-3.1-8B/config.json
  <model.gguf>           a llama.cpp GGUF file (a .gguf name or the GGUF magic): its RoPE metadata as
                         llama.cpp runs it, e.g. ropekit info ./Qwen2.5-7B-Q4_K_M.gguf; the notes say
                         how it was mapped (rope_freqs / LongRoPE factors, pair style, sliding-window layers)
  spec flags             e.g. ropekit info --head-dim 128 --base 500000 --scaling llama3 --factor 8 --original-max 8192

spec flags (only without a preset or config):
  --head-dim N           head dimension (required), e.g. --head-dim 128
  --rotary-dim N         rotate only the first N dims (partial rotary; default head_dim), e.g. --rotary-dim 32
  --base X               theta, default 10000, e.g. --base 500000
  --style S              half (pairs i, i+d/2; HF rotate_half, default) or interleaved (2i, 2i+1; GPT-J)
  --scaling S            none | linear | ntk_aware (or ntk) | dynamic | yarn | llama3 | longrope | truncated |
                         proportional, the names info --json prints, e.g. --scaling yarn
  --factor X             context factor (linear, dynamic, yarn, llama3 need it; longrope: attention only), e.g. --factor 4
  --original-max N       pre-scaling context (dynamic, yarn, llama3, longrope need it), e.g. --original-max 8192
  --beta-fast X          yarn: fast boundary in rotations, default 32, e.g. --beta-fast 32
  --beta-slow X          yarn: slow boundary in rotations, default 1, e.g. --beta-slow 1
  --mscale X             yarn: DeepSeek mscale, e.g. --mscale 0.707
  --mscale-all-dim X     yarn: DeepSeek mscale_all_dim, e.g. --mscale-all-dim 0.707
  --attention-factor X   yarn / longrope: override the attention factor, e.g. --attention-factor 1.0
  --low-freq-factor X    llama3: default 1, e.g. --low-freq-factor 1
  --high-freq-factor X   llama3: default 4, e.g. --high-freq-factor 4
  --alpha X              ntk_aware: NTK-aware base multiplier, e.g. --scaling ntk_aware --alpha 8
  --short-factor LIST    longrope: rotary_dim/2 comma-separated factors, e.g. --short-factor 1,1,1.5,2
  --long-factor LIST     longrope: rotary_dim/2 comma-separated factors, e.g. --long-factor 1,2,4,8
  --a X --b X --rho X    truncated: keep theta >= b, rho for a <= theta < b, 0 below a, e.g. --a 0.001 --b 0.01 --rho 0.0005
  --truncate-length L    truncated: b = 2*pi/L, a = b/8, rho = b/16 instead of --a/--b/--rho, e.g. --truncate-length 4096
  --fraction X           proportional: rotate the first int(X * rotary_dim / 2) pairs at base^(-2i/rotary_dim), the
                         rest pass through (--factor divides them, default 1), e.g. --scaling proportional --fraction 0.25
  --xpos-scale-base X    add xPos with this scale base, e.g. --xpos-scale-base 512
  --max-positions N      the scaled context to show (default original-max * factor, or 4096), e.g. --max-positions 32768

output flags:
  --seq-len N            frequencies for a sequence of N tokens (dynamic NTK and LongRoPE depend on it;
                         default: the scaled context), e.g. --seq-len 4096
  --layer N              only layer N of a config.json or per-layer preset, in the one-spec schema
                         below plus layer, layer_type and rope (false, and no spec, for a NoPE
                         layer), e.g. ropekit info gemma3-27b --layer 5
  --json                 print JSON instead of the table, e.g. ropekit info gemma-7b --json
  --plot FILE.svg        also write a two-panel SVG: wavelength per pair (original vs scaled, log
                         scale, context lengths as lines) and the relative-distance decay curve
                         mean_i cos(delta*theta_i) up to the scaled context, e.g. --plot rope.svg;
                         one page per distinct RoPE of a per-layer model

A model whose layers differ (Gemma 3/4, Llama 4, Cohere2, SmolLM3, Qwen3-Next, ...) prints one block
per distinct RoPE with the layers that use it, and marks the layers without RoPE (NoPE).

--json schema (one object):
  source                  "preset" | "config" | "gguf" | "flags"
  name                    preset name, config or GGUF path (null for flags)
  spec                    {description, head_dim, rotary_dim, base, style, scaling}
  max_position_embeddings declared context (a GGUF's {arch}.context_length; null when unknown)
  original_context        context before scaling; context: after scaling; seq_len: as used
  attention_factor        number
  num_attention_heads, num_key_value_heads   (null when unknown)
  notes                   [string]: what the config reader chose past a conflict, e.g. rope_scaling
                          and rope_parameters that disagree (rope_scaling wins, as in transformers);
                          for a GGUF how its metadata was mapped, the sliding-window layers' spec first
  pairs                   [{index, inv_freq, original_inv_freq, wavelength, original_wavelength,
                            ratio, regime, axis}]  (wavelength and ratio are null when infinite;
                            axis t / h / w for M-RoPE, 0 / 1 axial, null otherwise)
  query_scale             null, or {description, factor, beta, length, shift}: q is multiplied by
                          factor (1 + beta ln(1 + floor((p + shift) / length))) (Llama 4's NoPE
                          layers, Ministral 3 / Mistral 4)
  softmax_scale_factor    number: what the config multiplies the softmax scale by (1: nothing;
                          DeepSeek-style YaRN: mscale(factor, mscale_all_dim)^2)
  (the fields above describe the first layer with RoPE; a config.json or per-layer preset adds)
  layers                  [{index, layer_type, rope, query_scale, softmax_scale_factor, spec,
                          attention_factor, pairs}], one per layer; a NoPE layer has rope false and
                          no spec, attention_factor or pairs
)";

const char* const kPresetsHelp = R"(usage: ropekit presets [--json]

Lists the built-in presets: name, published checkpoint, head_dim / rotary_dim / base / style /
scaling, context and head counts. Each preset is also a config.json in tests/data/configs/.
  --json   a JSON array of {name, model, source, description, max_position_embeddings,
           num_attention_heads, num_key_value_heads}, e.g. ropekit presets --json
)";

const char* const kVerifyHelp = R"(usage: ropekit verify [preset | config.json | spec flags] [--tokens N] [--seed S]

Runs the shared case table (f32 / f16 / bf16 / f64 x half / interleaved x layouts x position kinds
x forward / backward / inverse x in / out of place x cos-sin from the table, past its rows or
computed in the kernel x query scale) on every kernel path of this build: the scalar loop, each
vector instruction set this CPU runs and, on each CUDA device present, the CUDA kernels (f64 runs
on the CPU only). Inputs and positions are random; every element is compared with a float64
reference that ships in this binary: its error over the norm of its rotated pair (tolerances f32
1e-5, f16 1e-3, bf16 8e-3; NaN fails), pass-through channels bit for bit, bytes outside the views
untouched; the CUDA kernels also within one storage ulp of the scalar loop. Prints PASS/FAIL and
the cases passed per path, then each failed case; exit status 1 when any path fails. The
frequencies are the spec's; both pair styles are checked. With xPos the positions lie around a
center (options.xpos_center) that keeps every scale within e^+-2.
  (no argument)   uses llama3.1-8b, e.g. ropekit verify
  --tokens N      tokens per sequence (1 to 4096), default 16, e.g. --tokens 64
  --seed S        random seed (default: fresh each run), e.g. --seed 7
Spec flags are as for ropekit info, e.g. ropekit verify --head-dim 64 --base 10000
)";

const char* const kBenchHelp = R"(usage: ropekit bench [preset | config.json | spec flags] [options]

Times apply_rope (q and k in place, the preset's q / k head counts) for a prefill shape
(1 x N tokens) and a decode shape (B sequences x 1 token at their own offsets), and a memcpy of the
same bytes in the same run. Reports the median over repeats: time, GB/s (q and k read and written
once), memcpy GB/s and the ratio.
  (no argument)     uses llama3.1-8b
  --device cpu      the device (only cpu in this command), e.g. --device cpu
  --prefill N       prefill tokens, default 2048, e.g. --prefill 512
  --decode-batch B  sequences in the decode shape, default 32, e.g. --decode-batch 8
  --repeats R       repeats (median, 1 to 1000), default 7, e.g. --repeats 3
  --dtype T         f32 | f16 | bf16, default bf16, e.g. --dtype f32
  --threads N       CPU threads (0 = all cores, at most 1024), default 0, e.g. --threads 1
  --q-heads N       override the q head count, e.g. --q-heads 32
  --k-heads N       override the k head count, e.g. --k-heads 8
  --json            {source, name, device, dtype, head_dim, q_heads, k_heads, repeats,
                     shapes: [{shape, batch, seq, bytes, seconds, gb_per_s, memcpy_seconds,
                     memcpy_gb_per_s, ratio_to_memcpy}]}
)";

int cmd_presets(const std::vector<std::string>& tokens, std::ostream& out) {
  const Args args(tokens, "presets", {}, {"json"});
  if (!args.positional().empty()) throw UsageError("ropekit presets takes no arguments, got \"" + args.positional()[0] + "\"");
  if (args.flag("json")) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& p : presets()) {
      j.push_back({{"name", p.name}, {"model", p.model}, {"source", p.source}, {"description", p.spec().describe()},
                   {"max_position_embeddings", p.max_position_embeddings},
                   {"num_attention_heads", p.num_attention_heads}, {"num_key_value_heads", p.num_key_value_heads}});
    }
    out << j.dump(2) << "\n";
    return 0;
  }
  char line[256];
  std::snprintf(line, sizeof line, "%-26s %-36s %5s %5s %9s %-11s %-9s %8s %7s\n", "name", "model", "head", "rot",
                "base", "style", "scaling", "context", "q/k");
  out << line;
  for (const auto& p : presets()) {
    const RopeSpec s = p.spec();
    const std::string heads = std::to_string(p.num_attention_heads) + "/" + std::to_string(p.num_key_value_heads);
    std::snprintf(line, sizeof line, "%-26s %-36s %5lld %5lld %9g %-11s %-9s %8lld %7s\n", p.name.c_str(),
                  p.model.c_str(), static_cast<long long>(s.head_dim()), static_cast<long long>(s.rotary_dim()),
                  s.base(), s.style_name().c_str(), s.scaling_name().c_str(),
                  static_cast<long long>(p.max_position_embeddings), heads.c_str());
    out << line;
  }
  return 0;
}

int run(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help") {
    out << kMainHelp;
    return argv.empty() ? 2 : 0;
  }
  if (argv[0] == "--version") {
    out << "ropekit " << ROPEKIT_VERSION_STRING << "\n";
    return 0;
  }
  const std::string command = argv[0];
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  struct Entry {
    const char* name;
    int (*fn)(const std::vector<std::string>&, std::ostream&);
    const char* help;
  };
  static const Entry entries[] = {{"info", cmd_info, kInfoHelp},
                                  {"presets", cmd_presets, kPresetsHelp},
                                  {"verify", cmd_verify, kVerifyHelp},
                                  {"bench", cmd_bench, kBenchHelp}};
  for (const auto& e : entries) {
    if (command != e.name) continue;
    for (const auto& a : rest) {
      if (a == "--help" || a == "-h") {
        out << e.help;
        return 0;
      }
    }
    try {
      return e.fn(rest, out);
    } catch (const UsageError& x) {
      err << "ropekit " << command << ": " << x.what() << "\n";
    } catch (const Error& x) {
      err << "ropekit " << command << ": " << std::string(x.what()).substr(std::string("ropekit: ").size()) << "\n";
    } catch (const std::exception& x) {
      err << "ropekit " << command << ": " << x.what() << "\n";
    }
    return 2;
  }
  err << "ropekit: unknown command \"" << command << "\" (expected info, presets, verify or bench; see ropekit --help)\n";
  return 2;
}

}  // namespace ropekit::cli
