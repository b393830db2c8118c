#pragma once
// `courtyard hub`: the processors (runner + projection store) and the HTTP API, in one process.
// run() blocks until the stop token fires; it throws when start-up fails or the processors die.
#include <functional>
#include <stop_token>

#include "hub/config.h"

namespace courtyard::hub {

// `on_listening` is called with the bound HTTP port once the API accepts connections.
void run_hub(const Config& config, std::stop_token stop, std::function<void(int)> on_listening = {});

}  // namespace courtyard::hub
