#pragma once
// One folder a command created and removes again unless it completes (kvq
// run's run folder). The signal handlers of InstallSignalHandlers
// (kvq/common/io.h) remove it, with its contents, after the temporaries,
// using only async-signal-safe system calls (openat, getdents64, unlinkat).
#include <filesystem>

namespace kvq {

void RegisterPendingFolder(const std::filesystem::path& folder) noexcept;
void UnregisterPendingFolder() noexcept;

}  // namespace kvq
