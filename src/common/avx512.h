#pragma once
// <immintrin.h> for the AVX-512 fast paths. GCC 12's _mm512_undefined_*
// (behind most AVX-512 intrinsics) trips -Wuninitialized once inlined (GCC PR
// 105593, fixed in 13); the warnings point into the header, so they are
// silenced for it alone (clang has neither the bug nor -Wmaybe-uninitialized).
#if defined(__AVX512F__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif
