#pragma once
// A KV-cache quantization format is a value: FormatSpec. Every format has one
// canonical name that parses back (flags, CSV rows, plan files all use it):
//
//   name      := base [":" param]* ["+" modifier]*
//   base      := fp16 | bf16 | int<b> (b = 2..8) | fp8e4m3 | fp8e5m2
//              | q8_0 | q4_0 | q4_1 | iq4_nl | nvfp4
//   int params:  tensor | token | channel | g<N>:dim | g<N>:token, then
//                optionally sym | asym (default: sym for tensor/token/channel,
//                asym for groups; the canonical name omits the default)
//   iq4_nl param: search  (ggml's scale-searching quantizer; default: the
//                reference row quantizer a CPU KV cache uses)
//   modifiers:   had | prerope | bias | sink<s> | recent<r> | trunc
//                (canonical order as listed; parsing accepts any order)
//
// Examples: fp16, int8:tensor, int8:token, int4:g32:dim, int2:g64:token,
// int8:channel:asym, q4_0, nvfp4, int4:g32:token+had+sink4.
// The exact math of every format is in docs/formats.md and in quant/kernels.h.
#include <cstdint>
#include <string>
#include <string_view>

namespace kvq {

enum class FormatKind {
  kFp16,
  kBf16,
  kInt,
  kFp8E4M3,
  kFp8E5M2,
  kQ8_0,
  kQ4_0,
  kQ4_1,
  kIq4Nl,
  kNvfp4
};

// Granularity of kInt scales over one head's [tokens, head_dim] block.
enum class Granularity {
  kTensor,      // one scale over all tokens x head_dim (per-sequence constant)
  kToken,       // one scale per token (over its head_dim values)
  kChannel,     // one scale per head_dim coordinate over all tokens (per-sequence constant)
  kGroupDim,    // groups of `group` consecutive head_dim values of one token
  kGroupToken,  // groups of `group` consecutive tokens of one channel (inside a prompt)
};

enum class Rounding { kNearestEven, kTrunc };

struct FormatSpec {
  FormatKind kind = FormatKind::kFp16;
  int bits = 16;                                   // kInt: 2..8.
  Granularity granularity = Granularity::kTensor;  // kInt only.
  int group = 0;                                   // kGroupDim / kGroupToken: group size.
  bool zero_point = false;  // kInt: asymmetric (min, scale) instead of symmetric.
  bool search = false;      // kIq4Nl: ggml's searching quantizer.
  Rounding rounding = Rounding::kNearestEven;  // kInt only.
  // Modifiers (any kind).
  bool hadamard = false;    // Orthonormal Walsh-Hadamard rotation of head_dim.
  bool pre_rope = false;    // K only: undo RoPE before quantizing, re-apply after.
  bool bias_aware = false;  // K only: subtract R(pos) b_k before, add back after.
  int sink = 0;             // First `sink` tokens of every prompt kept fp16.
  int recent = 0;           // Last `recent` tokens of every prompt kept fp16.

  // The canonical name; Parse(Name()) == *this.
  std::string Name() const;
  // Throws InputError "format 'NAME': ..." naming the offending part.
  static FormatSpec Parse(std::string_view name);

  // True when the scale depends on the whole sequence (tensor, channel, fp8,
  // nvfp4): a prompt-by-prompt caller should calibrate first (quantize.h).
  bool NeedsStats() const;
  bool IsPassthrough() const {
    return kind == FormatKind::kFp16 && !hadamard && !pre_rope && !bias_aware;
  }
  // Values per block along head_dim (ggml blocks 32, nvfp4 16, int
  // g<N>:dim N, else 1): head_dim must be a multiple.
  int HeadDimBlock() const;
  // Throws InputError when the format cannot apply to this head_dim (a
  // multiple of HeadDimBlock(); the Hadamard rotation needs a power of two).
  void CheckHeadDim(int head_dim) const;

  bool operator==(const FormatSpec&) const = default;
};

// Storage cost of one kv head under a format.
struct ByteCost {
  // Bytes per token (quantized values plus per-token / per-group parameters;
  // fp32 parameters count 4 bytes). Fractional when parameters are shared by
  // groups of tokens or when sink/recent tokens are averaged in.
  double per_token = 0;
  // Per-sequence constants (a per-head scale, per-channel scales): not
  // counted in per_token, as the reference system does.
  double per_sequence = 0;
};

// `prompt_len` is the sequence length that sink/recent fp16 tokens are
// averaged over (bytes/token = ((L - n) * base + n * 2 * head_dim) / L with
// n = min(L, sink + recent)).
ByteCost FormatCost(const FormatSpec& format, int head_dim, int64_t prompt_len);

}  // namespace kvq
