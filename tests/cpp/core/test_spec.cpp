// ropekit/spec.hpp: defaults, normalisation (rotary_dim 0 -> head_dim), names and descriptions.
// Invalid specs are in test_errors.cpp.
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

namespace sc = ropekit::scaling;
using ropekit::RopeSpec;
using ropekit::Style;

TEST(Spec, DefaultsAndNormalisation) {
  const RopeSpec spec({.head_dim = 128});
  EXPECT_EQ(spec.head_dim(), 128);
  EXPECT_EQ(spec.rotary_dim(), 128);  // 0 means head_dim
  EXPECT_EQ(spec.pairs(), 64);
  EXPECT_EQ(spec.base(), 10000.0);
  EXPECT_EQ(spec.style(), Style::half);
  EXPECT_EQ(spec.scaling_name(), "none");
  EXPECT_FALSE(spec.xpos().has_value());
  const RopeSpec partial({.head_dim = 80, .rotary_dim = 40, .style = Style::interleaved});
  EXPECT_EQ(partial.rotary_dim(), 40);
  EXPECT_EQ(partial.pairs(), 20);
  EXPECT_EQ(partial.style_name(), "interleaved");
  EXPECT_EQ(partial.params().rotary_dim, 40);
  // The smallest valid spec.
  EXPECT_EQ(RopeSpec({.head_dim = 2}).pairs(), 1);
}

TEST(Spec, ScalingNames) {
  const std::vector<std::pair<ropekit::Scaling, std::string>> cases{
      {sc::None{}, "none"},
      {sc::Linear{.factor = 2}, "linear"},
      {sc::NtkAware{.alpha = 2}, "ntk_aware"},
      {sc::DynamicNtk{.factor = 2}, "dynamic"},
      {sc::Yarn{.factor = 4}, "yarn"},
      {sc::Llama3{}, "llama3"},
      {sc::LongRope{.short_factor = std::vector<double>(8, 1.0), .long_factor = std::vector<double>(8, 2.0)}, "longrope"},
      {sc::Truncated::from_length(64), "truncated"},
  };
  for (const auto& [scaling, name] : cases) {
    const RopeSpec spec({.head_dim = 16, .scaling = scaling});
    EXPECT_EQ(spec.scaling_name(), name);
    EXPECT_NE(spec.describe().find("scaling=" + name), std::string::npos) << spec.describe();
  }
}

TEST(Spec, DescribeNamesEveryField) {
  const RopeSpec spec({.head_dim = 128, .rotary_dim = 64, .base = 500000, .style = Style::interleaved,
                       .scaling = sc::Llama3{.factor = 8, .original_max = 8192}, .xpos = ropekit::Xpos{.scale_base = 256}});
  const std::string d = spec.describe();
  for (const char* part : {"head_dim=128", "rotary_dim=64", "base=500000", "style=interleaved", "factor=8",
                           "original_max=8192", "xpos(scale_base=256"})
    EXPECT_NE(d.find(part), std::string::npos) << d << " lacks " << part;
  const RopeSpec yarn({.head_dim = 64, .scaling = sc::Yarn{.factor = 4, .mscale = 0.707, .truncate = false}});
  EXPECT_NE(yarn.describe().find("mscale=0.707"), std::string::npos) << yarn.describe();
  EXPECT_NE(yarn.describe().find("truncate=false"), std::string::npos) << yarn.describe();
}

TEST(Spec, StyleNames) {
  EXPECT_EQ(ropekit::style_from_string("half"), Style::half);
  EXPECT_EQ(ropekit::style_from_string("neox"), Style::half);
  EXPECT_EQ(ropekit::style_from_string("interleaved"), Style::interleaved);
  EXPECT_EQ(ropekit::style_from_string("gptj"), Style::interleaved);
  EXPECT_EQ(ropekit::to_string(Style::half), "half");
  EXPECT_EQ(ropekit::to_string(Style::interleaved), "interleaved");
  EXPECT_THROW((void)ropekit::style_from_string("Half"), ropekit::Error);
}

TEST(Spec, BoundaryValuesAccepted) {
  EXPECT_NO_THROW(RopeSpec({.head_dim = 16, .base = 1.0000001}));
  EXPECT_NO_THROW(RopeSpec({.head_dim = 16, .scaling = sc::DynamicNtk{.factor = 1.0}}));
  EXPECT_NO_THROW(RopeSpec({.head_dim = 16, .scaling = sc::Truncated{.a = 0.1, .b = 0.1, .rho = 0.0}}));
  EXPECT_NO_THROW(RopeSpec({.head_dim = 16, .scaling = sc::Yarn{.factor = 4, .extrapolation_factor = 0.0}}));
  EXPECT_THROW(RopeSpec({.head_dim = 16, .base = 1.0}), ropekit::Error);  // base 1: every frequency 1
  EXPECT_THROW(RopeSpec({.head_dim = 2, .scaling = sc::NtkAware{.alpha = 2}}), ropekit::Error);  // d / (d - 2)
}

}  // namespace
