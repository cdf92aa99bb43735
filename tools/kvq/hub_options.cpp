#include "hub_options.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "command.h"

namespace kvq::cli {
namespace {

// "12.3/45.6 MiB": both in the unit that suits the larger.
std::string Amounts(uint64_t done, uint64_t total) {
  const uint64_t larger = std::max(done, total);
  const char* unit = larger >= (uint64_t{1} << 30) ? "GiB" : larger >= (1u << 20) ? "MiB" : "KiB";
  const double scale = larger >= (uint64_t{1} << 30) ? 1073741824.0
                       : larger >= (1u << 20)        ? 1048576.0
                                                     : 1024.0;
  if (total == 0) return fmt::format("{:.1f} {}", done / scale, unit);
  return fmt::format("{:.1f}/{:.1f} {}", done / scale, total / scale, unit);
}

std::string Duration(double seconds) {
  const long total = std::lround(seconds);
  if (total >= 3600)
    return fmt::format("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60);
  return fmt::format("{}:{:02}", total / 60, total % 60);
}

// One line, redrawn in place: file, bar, bytes, rate, ETA (elapsed when done).
void DrawProgress(const DownloadProgress& p) {
  constexpr int kWidth = 24;
  const double fraction = p.total > 0 ? std::min(1.0, double(p.downloaded) / double(p.total)) : 0;
  const int filled = static_cast<int>(fraction * kWidth);
  const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '-');
  const std::string timing = p.finished
                                 ? "in " + Duration(p.seconds)
                                 : (p.SecondsLeft() > 0 ? "ETA " + Duration(p.SecondsLeft()) : "");
  std::fprintf(stderr, "\r%s [%s] %s  %.1f MiB/s  %s\033[K%s", p.file.c_str(), bar.c_str(),
               Amounts(p.downloaded, p.total).c_str(), p.Rate() / 1048576.0, timing.c_str(),
               p.finished ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace

HubOptions CliHubOptions(bool offline) {
  HubOptions options;
  if (offline) options.offline = true;
  if (StderrIsTerminal()) options.progress = DrawProgress;
  return options;
}

}  // namespace kvq::cli
