#include "kvq/quant/format.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "kvq/common/error.h"
#include "kvq/common/strings.h"
#include "kvq/quant/kernels.h"

namespace kvq {
namespace {

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
    name = Traits(kind).name;
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
  std::string known;  // For the error message: "fp16, bf16, int2..int8, ...".
  for (const FormatTraits& t : FormatTable()) {
    known += fmt::format("{}{}", known.empty() ? "" : ", ",
                         t.kind == FormatKind::kInt ? "int2..int8" : t.name);
    if (t.kind != FormatKind::kInt && base == t.name) {
      spec.kind = t.kind;
      spec.bits = t.bits;
      found = true;
    }
  }
  if (!found) {
    const int bits = NumberAfter(base, "int");
    if (bits < 0) fail(base, "is not a format (" + known + ")");
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
  if (kind == FormatKind::kInt) {
    return granularity == Granularity::kTensor || granularity == Granularity::kChannel;
  }
  return Traits(kind).needs_stats;
}

int FormatSpec::HeadDimBlock() const {
  if (kind == FormatKind::kInt) return granularity == Granularity::kGroupDim ? group : 1;
  return Traits(kind).block;
}

void FormatSpec::CheckHeadDim(int head_dim) const {
  const int block = HeadDimBlock();
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
  if (f.kind == FormatKind::kInt) {
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
      case Granularity::kGroupToken:
        cost.per_token += params * d / f.group;
        break;
    }
  } else {
    const FormatTraits& t = Traits(f.kind);
    cost.per_token = d / t.block * t.block_bytes;
    cost.per_sequence = t.sequence_bytes;
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
