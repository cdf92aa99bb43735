#pragma once
// The Hugging Face environment variables, read in this one place: the
// ecosystem's convention for the cache, endpoint, token and offline switch.
#include <filesystem>
#include <string>

#include "kvq/hub/hub.h"

namespace kvq::hub {

struct Settings {
  bool offline = false;
  std::string offline_reason;  // "--offline" or "HF_HUB_OFFLINE is set"
  std::string endpoint;        // no trailing '/'
  std::string token;           // empty: send none
  std::filesystem::path cache_dir;
  long connect_timeout_seconds = 10;
};

// Fills what `options` leaves unset from the environment (see HubOptions).
Settings ReadSettings(const HubOptions& options);

}  // namespace kvq::hub
