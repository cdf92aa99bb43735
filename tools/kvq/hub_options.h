#pragma once
// The CLI's Hub options: a progress bar on stderr when it is a terminal.
// Every command that takes --model resolves it with these.
#include "kvq/hub/hub.h"

namespace kvq::cli {

// `offline`: the command's --offline flag; false leaves HF_HUB_OFFLINE in charge.
HubOptions CliHubOptions(bool offline);

}  // namespace kvq::cli
