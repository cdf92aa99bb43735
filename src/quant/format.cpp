#include "kvq/quant/format.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "kvq/common/error.h"
#include "kvq/common/strings.h"

namespace kvq {
namespace {

struct NamedKind {
  const char* name;
  FormatKind kind;
  int bits;
};

constexpr NamedKind kNamedKinds[] = {
    {"fp16", FormatKind::kFp16, 16},      {"bf16", FormatKind::kBf16, 16},
    {"fp8e4m3", FormatKind::kFp8E4M3, 8}, {"fp8e5m2", FormatKind::kFp8E5M2, 8},
    {"q8_0", FormatKind::kQ8_0, 8},       {"q4_0", FormatKind::kQ4_0, 4},
    {"q4_1", FormatKind::kQ4_1, 4},       {"iq4_nl", FormatKind::kIq4Nl, 4},
    {"nvfp4", FormatKind::kNvfp4, 4},
};

// The decimal integer after `prefix` in `part`, or -1 when `part` does not
// start with prefix or the rest is not an integer >= 0 (callers range-check).
int NumberAfter(std::string_view part, std::string_view prefix) {
  int value = 0;
  if (!part.starts_with(prefix) || !ParseNonNegativeInt(part.substr(prefix.size()), value)) {
    return -1;
  }
  return value;
}

bool DefaultZeroPoint(Granularity g) {
  return g == Granularity::kGroupDim || g == Granularity::kGroupToken;
}

}  // namespace

std::string FormatSpec::Name() const {
  std::string name;
  if (kind == FormatKind::kInt) {
    name = fmt::format("int{}", bits);
    switch (granularity) {
      case Granularity::kTensor:
        name += ":tensor";
        break;
      case Granularity::kToken:
        name += ":token";
        break;
      case Granularity::kChannel:
        name += ":channel";
        break;
      case Granularity::kGroupDim:
        name += fmt::format(":g{}:dim", group);
        break;
      case Granularity::kGroupToken:
        name += fmt::format(":g{}:token", group);
        break;
    }
    if (zero_point != DefaultZeroPoint(granularity)) name += zero_point ? ":asym" : ":sym";
  } else {
    for (const auto& k : kNamedKinds) {
      if (k.kind == kind) name = k.name;
    }
    if (kind == FormatKind::kIq4Nl && search) name += ":search";
  }
  if (hadamard) name += "+had";
  if (pre_rope) name += "+prerope";
  if (bias_aware) name += "+bias";
  if (sink > 0) name += fmt::format("+sink{}", sink);
  if (recent > 0) name += fmt::format("+recent{}", recent);
  if (rounding == Rounding::kTrunc) name += "+trunc";
  return name;
}

FormatSpec FormatSpec::Parse(std::string_view name) {
  auto fail = [&](std::string_view part, const std::string& why) -> void {
    ThrowInput("format '{}': '{}' {}", name, part, why);
  };
  if (name.empty()) ThrowInput("empty format name (try fp16, int8:tensor, int4:g32:dim, q4_0)");
  const auto pieces = SplitFields(name, '+');
  const auto params = SplitFields(pieces[0], ':');
  FormatSpec spec;
  const std::string_view base = params[0];
  size_t next = 1;
  bool found = false;
  for (const auto& k : kNamedKinds) {
    if (base == k.name) {
      spec.kind = k.kind;
      spec.bits = k.bits;
      found = true;
    }
  }
  if (!found) {
    const int bits = NumberAfter(base, "int");
    if (bits < 0) {
      fail(base,
           "is not a format (fp16, bf16, int2..int8, fp8e4m3, fp8e5m2, q8_0, q4_0, q4_1, "
           "iq4_nl, nvfp4)");
    }
    if (bits < 2 || bits > 8) fail(base, "has a bit width outside 2..8");
    spec.kind = FormatKind::kInt;
    spec.bits = bits;
    if (params.size() < 2) {
      fail(base, "needs a granularity: int8:tensor, :token, :channel, :g32:dim or :g32:token");
    }
    const std::string_view g = params[1];
    next = 2;
    if (g == "tensor") {
      spec.granularity = Granularity::kTensor;
    } else if (g == "token") {
      spec.granularity = Granularity::kToken;
    } else if (g == "channel") {
      spec.granularity = Granularity::kChannel;
    } else if (const int group = NumberAfter(g, "g"); group >= 0) {
      if (group < 1) fail(g, "is an empty group (group size must be >= 1)");
      if (params.size() < 3 || (params[2] != "dim" && params[2] != "token")) {
        fail(g, "must be followed by :dim (group along head_dim) or :token (group along tokens)");
      }
      spec.group = group;
      spec.granularity = params[2] == "dim" ? Granularity::kGroupDim : Granularity::kGroupToken;
      next = 3;
    } else {
      fail(g, "is not a granularity (tensor, token, channel, g<N>:dim, g<N>:token)");
    }
    spec.zero_point = DefaultZeroPoint(spec.granularity);
    if (next < params.size() && (params[next] == "sym" || params[next] == "asym")) {
      spec.zero_point = params[next] == "asym";
      ++next;
    }
  } else if (spec.kind == FormatKind::kIq4Nl && params.size() > 1 && params[1] == "search") {
    spec.search = true;
    next = 2;
  }
  if (next < params.size()) fail(params[next], "is not a parameter of " + std::string(base));

  for (size_t i = 1; i < pieces.size(); ++i) {
    const std::string_view m = pieces[i];
    // A modifier given twice (+sink4+sink8, +had+had) is a contradiction
    // or a typo, never "last one wins".
    const auto kind_of = [](std::string_view x) {
      return x.substr(0, x.find_first_of("0123456789"));
    };
    for (size_t j = 1; j < i; ++j) {
      if (kind_of(pieces[j]) == kind_of(m))
        fail(m, "repeats the modifier '+" + std::string(pieces[j]) + "'");
    }
    if (m == "had") {
      spec.hadamard = true;
    } else if (m == "prerope") {
      spec.pre_rope = true;
    } else if (m == "bias") {
      spec.bias_aware = true;
    } else if (m == "trunc") {
      if (spec.kind != FormatKind::kInt) fail(m, "applies to int formats only");
      spec.rounding = Rounding::kTrunc;
    } else if (const int s = NumberAfter(m, "sink"); s >= 0) {
      spec.sink = s;
    } else if (const int r = NumberAfter(m, "recent"); r >= 0) {
      spec.recent = r;
    } else {
      fail(m, "is not a modifier (had, prerope, bias, sink<N>, recent<N>, trunc)");
    }
  }
  return spec;
}

bool FormatSpec::NeedsStats() const {
  switch (kind) {
    case FormatKind::kInt:
      return granularity == Granularity::kTensor || granularity == Granularity::kChannel;
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp8E5M2:
    case FormatKind::kNvfp4:
      return true;
    default:
      return false;
  }
}

void FormatSpec::CheckHeadDim(int head_dim) const {
  int block = 1;
  switch (kind) {
    case FormatKind::kQ8_0:
    case FormatKind::kQ4_0:
    case FormatKind::kQ4_1:
    case FormatKind::kIq4Nl:
      block = 32;
      break;
    case FormatKind::kNvfp4:
      block = 16;
      break;
    case FormatKind::kInt:
      if (granularity == Granularity::kGroupDim) block = group;
      break;
    default:
      break;
  }
  if (head_dim % block != 0) {
    ThrowInput("format '{}' needs head_dim to be a multiple of {}, the model has {}", Name(), block,
               head_dim);
  }
  if (hadamard && (head_dim & (head_dim - 1)) != 0) {
    ThrowInput("format '{}': +had needs head_dim to be a power of two, the model has {}", Name(),
               head_dim);
  }
}

ByteCost FormatCost(const FormatSpec& f, int head_dim, int64_t prompt_len) {
  const double d = head_dim;
  ByteCost cost;
  switch (f.kind) {
    case FormatKind::kFp16:
    case FormatKind::kBf16:
      cost.per_token = 2 * d;
      break;
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp8E5M2:
      cost.per_token = d;
      cost.per_sequence = 4;
      break;
    case FormatKind::kQ8_0:
      cost.per_token = d / 32 * 34;
      break;
    case FormatKind::kQ4_0:
    case FormatKind::kIq4Nl:
      cost.per_token = d / 32 * 18;
      break;
    case FormatKind::kQ4_1:
      cost.per_token = d / 32 * 20;
      break;
    case FormatKind::kNvfp4:
      cost.per_token = d / 16 * 9;  // 16 e2m1 nibbles + one e4m3 byte.
      cost.per_sequence = 4;
      break;
    case FormatKind::kInt: {
      const double params = f.zero_point ? 8 : 4;  // fp32 scale (+ fp32 minimum).
      cost.per_token = d * f.bits / 8;
      switch (f.granularity) {
        case Granularity::kTensor:
          cost.per_sequence = params;
          break;
        case Granularity::kToken:
          cost.per_token += params;
          break;
        case Granularity::kChannel:
          cost.per_sequence = params * d;
          break;
        case Granularity::kGroupDim:
          cost.per_token += params * d / f.group;
          break;
        case Granularity::kGroupToken:
          cost.per_token += params * d / f.group;
          break;
      }
      break;
    }
  }
  // In int64: sink and recent may each be up to INT_MAX.
  const int64_t protected_tokens = int64_t{f.sink} + f.recent;
  if (protected_tokens > 0 && prompt_len > 0) {
    const double kept = static_cast<double>(std::min<int64_t>(prompt_len, protected_tokens));
    const double len = static_cast<double>(prompt_len);
    cost.per_token = ((len - kept) * cost.per_token + kept * 2 * d) / len;
  }
  return cost;
}

}  // namespace kvq
