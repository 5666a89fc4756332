#pragma once
// std::visit over the scaling families with one overload per family and no catch-all, so that a
// family added to ropekit::Scaling is a compile error wherever it must be handled.
#include <type_traits>
#include <variant>

namespace ropekit::detail {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
// Clang 14 does not deduce aggregate template arguments (P1816) by itself.
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

// For an overload shared by several families: [](const one_of<A, B> auto& s) { ... }.
template <class T, class... U>
concept one_of = (std::is_same_v<std::remove_cvref_t<T>, U> || ...);

}  // namespace ropekit::detail
