#pragma once
// A one-line progress display on stderr: "label [#####     ] 12/24 layers
// 850 tok/s ETA 3s". Drawn only when stderr is a terminal, so logs and
// pipes stay clean.
#include <chrono>
#include <string>

namespace kvq::cli {

class Progress {
 public:
  // `rate_per_unit`: how many rate units (e.g. tokens) one step stands for.
  Progress(std::string label, int64_t total, std::string unit, double rate_per_unit = 1.0,
           std::string rate_unit = "");
  ~Progress();
  void Update(int64_t done);
  void Finish();

 private:
  std::string label_, unit_, rate_unit_;
  int64_t total_;
  double rate_per_unit_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace kvq::cli
