// The fused kernel for the float formats: fp16, fp8e4m3/e5m2 and nvfp4
// (kernels.cpp's Fp16Fast, RoundMiniFloat and Nvfp4Reference, in lanes).
#include "quant/fused/families.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/fused/float.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "quant/fused/loops-inl.h"
#include "quant/rounding_lanes-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace fused {
namespace {

// From an fp16 source y = x: e = 0.
struct Fp16Row {
  static constexpr bool kFlat = true, kTinyErrors = false;
  void Begin(int64_t) {}
  HWY_INLINE VF One(int64_t, int, VF x) const { return RoundToHalfLanes(DF(), x); }
};

// RoundMiniFloat of a >= 0 in lanes: nearest even on the grid of a
// minifloat with man mantissa bits and minimum exponent min_exp, saturating
// at max (also for a NaN, as !(a < max) does there). The exponent comes from
// a's bits (a float subnormal's reads -127 where its true exponent is lower:
// both are below min_exp); a / quantum is a * 2^(man - e), the same
// correctly rounded value without the divider, and exact.
HWY_INLINE VF RoundMiniFloatLanes(VF a, float max, int min_exp, int man) {
  const DF df;
  const hn::RebindToSigned<DF> di;
  const auto biased = hn::ShiftRight<23>(hn::BitCast(di, a));
  const auto e = hn::Max(hn::Sub(biased, hn::Set(di, 127)), hn::Set(di, min_exp));
  const VF quantum = hn::BitCast(df, hn::ShiftLeft<23>(hn::Add(e, hn::Set(di, 127 - man))));
  const VF up = hn::BitCast(df, hn::ShiftLeft<23>(hn::Sub(hn::Set(di, 127 + man), e)));
  const VF vmax = hn::Set(df, max);
  const VF r = hn::Min(vmax, hn::Mul(RoundEven(df, hn::Mul(a, up)), quantum));
  return hn::IfThenElse(hn::Lt(a, vmax), r, vmax);
}

// v = x / s; a = |v|; quantum = 2^(max(floor(log2 a), 1 - bias) - man_bits);
// r = min(rint(a / quantum) * quantum, max), r = max where !(a < max);
// y = copysign(r, v) * s. s == 0 (an all-zero head) gives 0.
// An fp8 subnormal times a scale as small as 2^-33 can come within 2^-63
// of an fp16 x: kTinyErrors.
struct Fp8Row {
  static constexpr bool kFlat = true, kTinyErrors = true;
  float s, max;
  int min_exp, man;
  Fp8Row(bool e4m3, float amax)
      : s(amax / (e4m3 ? 448.0f : 57344.0f)),
        max(e4m3 ? 448.0f : 57344.0f),
        min_exp(e4m3 ? 1 - 7 : 1 - 15),
        man(e4m3 ? 3 : 2) {}
  void Begin(int64_t) {}
  HWY_INLINE VF One(int64_t, int, VF x) const {
    const DF df;
    if (s == 0) return hn::Zero(df);
    const VF vs = hn::Set(df, s);
    const VF v = hn::Div(x, vs);
    const VF r = RoundMiniFloatLanes(hn::Abs(v), max, min_exp, man);
    return hn::Mul(hn::CopySignToAbs(r, v), vs);
  }
};

// nvfp4 (kernels.cpp's Nvfp4Reference): blocks of 16 values, global = amax /
// (6 * 448), block = e4m3(bmax / 6 / global) (RoundMiniFloat), scale = block
// * global, y = e2m1(x / scale) * scale, 0 where scale is 0. The block
// scales are computed kBatch blocks at a time when One reaches a new batch,
// N blocks per vector. e2m1 is E2m1Encode's loop over the 8 magnitudes run
// in lanes: the same float errors and the same tie rule, so the same code
// for every input. y can come within 2^-63 of an fp16 x, as fp8's can:
// kTinyErrors.
template <class Source>
struct Nvfp4Row {
  static constexpr bool kFlat = true, kTinyErrors = true;
  static constexpr int kBatch = 16;  // Blocks of 16.
  Source in;
  int64_t end;  // One past the head's last value.
  float global;
  int64_t batch = -1;
  HWY_ALIGN float scales[kBatch] = {};

  Nvfp4Row(const Source& source, int64_t n, float amax)
      : in(source), end(n), global(amax / (6.0f * 448.0f)) {}

  void Batch(int64_t i0) {
    const DF df;
    const int64_t N = Lanes();
    const int64_t count = std::min<int64_t>(kBatch, (end - i0) / 16);
    HWY_ALIGN float block_max[kBatch] = {};
    for (int64_t k = 0; k < count; ++k) {
      VF m = hn::Zero(df);
      for (int64_t j = 0; j < 16; j += N) m = hn::Max(m, hn::Abs(in.Load(i0 + 16 * k + j)));
      block_max[k] = MaxOf(m);
    }
    const VF vglobal = hn::Set(df, global);
    for (int64_t k = 0; k < kBatch; k += N) {
      const VF bmax = hn::Load(df, block_max + k);
      const VF block =
          RoundMiniFloatLanes(hn::Div(hn::Div(bmax, hn::Set(df, 6.0f)), vglobal), 448.0f, -6, 3);
      hn::Store(global == 0 ? hn::Zero(df) : hn::Mul(block, vglobal), df, scales + k);
    }
    batch = i0;
  }

  void Begin(int64_t) {}
  HWY_INLINE VF One(int64_t i, int, VF x) {
    const DF df;
    if (batch < 0 || i - batch >= 16 * kBatch) Batch(i);
    const float scale = scales[(i - batch) / 16];
    if (scale == 0) return hn::Zero(df);
    const VF vscale = hn::Set(df, scale);
    const VF v = hn::Div(x, vscale);
    const VF a = hn::Abs(v);
    constexpr float kMagnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    VF best = hn::Zero(df), best_err = a;
    for (int c = 1; c < 8; ++c) {
      const VF t = hn::Set(df, kMagnitudes[c]);
      const VF err = hn::Abs(hn::Sub(a, t));
      // Ties go to the even code (E2m1Encode).
      const MF take = c % 2 == 0 ? hn::Le(err, best_err) : hn::Lt(err, best_err);
      best = hn::IfThenElse(take, t, best);
      best_err = hn::IfThenElse(take, err, best_err);
    }
    return hn::Mul(hn::CopySignToAbs(best, v), vscale);
  }
};

// The round trip of a whole head, one kernel per format. fp8 and nvfp4 take
// their global scale from the caller's statistics or, without them, from a
// statistics pass (ScanHead).
template <FormatKind kKind, Mode kMode, class Source>
void FloatHead(const FusedCall& call, const Source& in, Totals& totals) {
  const int64_t tokens = call.tokens, n = call.tokens * call.head_dim;
  const int d = call.head_dim;
  float* y = call.y;
  auto row_for = [&](float amax) {
    if constexpr (kKind == FormatKind::kNvfp4) {
      return Nvfp4Row<Source>(in, n, amax);
    } else {
      return Fp8Row(call.format.kind == FormatKind::kFp8E4M3, amax);
    }
  };
  if constexpr (kKind == FormatKind::kFp16) {
    RowLoop<kMode>(in, 0, tokens, d, y, totals, Fp16Row{});
  } else if (call.stats != nullptr) {
    RowLoop<kMode>(in, 0, tokens, d, y, totals, row_for(call.stats->amax));
  } else {
    float min, max;
    ScanHead<kMode>(in, n, min, max, totals);
    RowLoop<WithoutSquares(kMode)>(in, 0, tokens, d, y, totals,
                                   row_for(std::max(std::fabs(min), std::fabs(max))));
  }
}

}  // namespace

template <FormatKind kKind>
void FloatKernel(const FusedCall& call) {
  Run(call, [&](auto mode, const auto& in, Totals& totals)
                HWY_ATTR { FloatHead<kKind, decltype(mode)::kMode>(call, in, totals); });
}

}  // namespace fused

void Fp16Kernel(const FusedCall& call) { fused::FloatKernel<FormatKind::kFp16>(call); }
void Fp8Kernel(const FusedCall& call) { fused::FloatKernel<FormatKind::kFp8E4M3>(call); }
void Nvfp4Kernel(const FusedCall& call) { fused::FloatKernel<FormatKind::kNvfp4>(call); }

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(Fp16Kernel);
HWY_EXPORT(Fp8Kernel);
HWY_EXPORT(Nvfp4Kernel);

void FusedFp16Head(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(Fp16Kernel)(call); }
void FusedFp8Head(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(Fp8Kernel)(call); }
void FusedNvfp4Head(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(Nvfp4Kernel)(call); }

}  // namespace kvq
#endif
