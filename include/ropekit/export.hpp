#pragma once
// ROPEKIT_API marks what a shared libropekit exports; everything else is hidden
// (CXX_VISIBILITY_PRESET hidden). CMake defines ROPEKIT_SHARED for a shared library and its users,
// and ROPEKIT_BUILDING while compiling the library itself. A static build leaves the macro empty.
#if defined(ROPEKIT_SHARED)
#if defined(_WIN32)
#if defined(ROPEKIT_BUILDING)
#define ROPEKIT_API __declspec(dllexport)
#else
#define ROPEKIT_API __declspec(dllimport)
#endif
#else
#define ROPEKIT_API __attribute__((visibility("default")))
#endif
#else
#define ROPEKIT_API
#endif
