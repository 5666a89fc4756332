#pragma once
// The `ropekit` command, as a library: tests call run() in-process with string streams.
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "ropekit/model_rope.hpp"
#include "ropekit/spec.hpp"

namespace ropekit::cli {

// A command-line mistake: printed as one line, exit status 2.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

// `--name value`, `--name=value` and boolean `--name`; anything else is positional.
class Args {
 public:
  Args(const std::vector<std::string>& tokens, const std::string& command, const std::set<std::string>& value_flags,
       const std::set<std::string>& bool_flags);

  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& name) const { return values_.count(name) != 0 || bools_.count(name) != 0; }
  bool flag(const std::string& name) const { return bools_.count(name) != 0; }
  std::optional<std::string> text(const std::string& name) const;
  std::optional<double> number(const std::string& name) const;
  // In the flag's range from integer_flags(); anything else is a UsageError naming the range.
  std::optional<int64_t> integer(const std::string& name) const;
  std::optional<std::vector<double>> number_list(const std::string& name) const;  // "1,1.5,2"
  // Every flag given, in order (for "cannot be combined" checks).
  std::vector<std::string> given() const;

 private:
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
  std::set<std::string> bools_;
};

// The largest context (and --seq-len) the commands accept: positions fit int32, as engines store them.
constexpr int64_t kMaxContext = (int64_t{1} << 31) - 1;

// Every integer flag of every command and the values it accepts.
struct IntegerFlag {
  std::string name;
  int64_t least, most;
};
const std::vector<IntegerFlag>& integer_flags();

// The flags that describe a spec by hand (`ropekit info --head-dim 128 ...`).
const std::set<std::string>& spec_value_flags();

// What `info`, `verify` and `bench` act on: a preset, a config.json or hand-written flags.
struct Resolved {
  RopeSpec spec;
  std::string source;                              // "preset", "config" or "flags"
  std::string name;                                // preset name, config path or "" for flags
  std::optional<int64_t> max_position_embeddings;  // declared context, when known
  int64_t num_attention_heads = 0;                 // 0 when unknown
  int64_t num_key_value_heads = 0;
  std::vector<std::string> notes;                  // from the config reader (HfConfigInfo::notes)
  std::optional<ModelRope> model;                  // each layer's RoPE, from a config.json or per-layer preset
};

// `default_preset` is used when neither a positional nor spec flags are given ("" = required).
Resolved resolve(const Args& args, const std::string& default_preset = "");

// The context before scaling (original_max of the scaling, else the declared context) and after;
// a ropekit::Error when either passes kMaxContext (e.g. original_max x factor 1e300).
int64_t original_context(const Resolved& r);
int64_t scaled_context(const Resolved& r);

int run(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

int cmd_info(const std::vector<std::string>& args, std::ostream& out);
int cmd_presets(const std::vector<std::string>& args, std::ostream& out);
int cmd_verify(const std::vector<std::string>& args, std::ostream& out);
int cmd_bench(const std::vector<std::string>& args, std::ostream& out);

// Help texts (also printed by `<cmd> --help`).
extern const char* const kMainHelp;
extern const char* const kInfoHelp;
extern const char* const kPresetsHelp;
extern const char* const kVerifyHelp;
extern const char* const kBenchHelp;

// Per-pair view of what the scaling did, shared by the table, --json and --plot.
struct PairRow {
  int64_t index;
  double inv_freq;           // scaled
  double original_inv_freq;  // same spec without scaling
  double wavelength;         // 2*pi / inv_freq (inf when the pair does not rotate)
  double original_wavelength;
  double ratio;              // wavelength / original_wavelength
  std::string regime;        // extrapolated | interpolated | blended | constant | removed
  std::string axis;          // the position axis that turns it: t / h / w (M-RoPE), 0 / 1 (axial), else empty
};
std::vector<PairRow> pair_rows(const RopeSpec& spec, int64_t seq_len);

struct PlotInput {
  std::string title;     // e.g. "preset llama3.1-8b"
  std::string subtitle;  // the spec's description
  std::vector<PairRow> rows;
  int64_t original_context;
  int64_t context;
};
// A self-contained SVG document: one page per input (a model's distinct RoPEs), each with two
// panels (wavelengths; relative-distance decay).
std::string plot_svg(const std::vector<PlotInput>& pages);

}  // namespace ropekit::cli
