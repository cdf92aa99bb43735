#include "progress.h"

#include <cstdio>

#include <fmt/format.h>

#include "command.h"

namespace kvq::cli {

Progress::Progress(std::string label, int64_t total, std::string unit, double rate_per_unit,
                   std::string rate_unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      rate_unit_(rate_unit.empty() ? unit_ : std::move(rate_unit)),
      total_(total),
      rate_per_unit_(rate_per_unit),
      enabled_(StderrIsTerminal()),
      start_(std::chrono::steady_clock::now()) {
  Update(0);
}

Progress::~Progress() { Finish(); }

void Progress::Update(int64_t done) {
  if (!enabled_ || finished_) return;
  constexpr int kWidth = 24;
  const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1;
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = fmt::format("\r{} [{}{}] {}/{} {}", label_, std::string(filled, '#'),
                                 std::string(kWidth - filled, ' '), done, total_, unit_);
  if (done > 0 && seconds > 0) {
    const double rate = static_cast<double>(done) * rate_per_unit_ / seconds;
    const double eta = seconds * static_cast<double>(total_ - done) / static_cast<double>(done);
    line += fmt::format("  {:.0f} {}/s  ETA {:.0f}s", rate, rate_unit_, eta);
  }
  std::fputs((line + "\033[K").c_str(), stderr);
  std::fflush(stderr);
}

void Progress::Finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::fputs("\n", stderr);
}

}  // namespace kvq::cli
