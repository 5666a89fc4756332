// Rotates one bf16 head and one f32 head through the installed library and checks the numbers.
#include <cmath>
#include <cstdio>
#include <vector>

#include <ropekit/ropekit.hpp>

int main() {
  const ropekit::RopeSpec spec({.head_dim = 4, .base = 10000.0});
  ropekit::RopeTable table(spec, 8);
  // q: one token, one head, (x0, x1, x2, x3) with half pairs (0, 2) and (1, 3), at position 5.
  std::vector<float> q{1.0f, 2.0f, 3.0f, 4.0f};
  const auto view = ropekit::TensorView::thd(q.data(), ropekit::DType::f32, 1, 1, 4);
  ropekit::apply_rope({view}, ropekit::Positions::from_offset(5), table);
  const double f[2] = {1.0, 1.0 / 100.0};  // 10000^(-2i/4)
  const double x[4] = {1, 2, 3, 4};
  double worst = 0;
  for (int i = 0; i < 2; ++i) {
    const double a = 5.0 * f[i];
    worst = std::fmax(worst, std::fabs(q[i] - (x[i] * std::cos(a) - x[i + 2] * std::sin(a))));
    worst = std::fmax(worst, std::fabs(q[i + 2] - (x[i + 2] * std::cos(a) + x[i] * std::sin(a))));
  }
  // A bad argument is reported as ropekit::Error.
  bool raised = false;
  try {
    ropekit::RopeSpec bad({.head_dim = 3});
  } catch (const ropekit::Error&) {
    raised = true;
  }
  std::printf("ropekit %s: max error %.3g, errors %s\n", ROPEKIT_VERSION_STRING, worst, raised ? "raised" : "missing");
  if (!(worst < 1e-5) || !raised) return 1;
  std::puts("ok");
  return 0;
}
