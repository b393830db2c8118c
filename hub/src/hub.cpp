#include "hub/hub.h"

#include <atomic>
#include <thread>

#include <spdlog/spdlog.h>

#include "http_server.h"
#include "log_writer.h"
#include "hub/api.h"
#include "processors/runner.h"
#include "processors/store.h"

namespace courtyard::hub {

void run_hub(const Config& config, std::stop_token stop, std::function<void(int)> on_listening) {
  processors::StoreConfig store_config;
  store_config.dir = config.var_path("hub/state").string();
  store_config.block_cache_bytes = static_cast<std::size_t>(config.hub.block_cache_mb) << 20;
  std::filesystem::create_directories(store_config.dir);
  auto store = processors::Store::open(store_config);
  if (!store) throw std::runtime_error((store.error()));

  processors::RunnerConfig runner_config;
  runner_config.kafka = config.kafka;
  runner_config.group_id = config.hub.group_id;
  runner_config.instance_id = config.hub.instance_id;
  runner_config.rules = load_rules(config.hub.rules_file);
  runner_config.context.utc_offset_min = config.hub.utc_offset_minutes;
  runner_config.max_batch = static_cast<std::size_t>(config.hub.max_batch);
  processors::Runner runner(runner_config, **store);

  std::stop_source stopping;
  std::atomic<bool> runner_alive{true};
  std::exception_ptr runner_error;
  LogWriter writer(config.kafka);
  Metrics metrics;
  Api api({store->get(), [&] { return runner.freshness(); }, [&] { return runner.stats(); },
           [&] { return runner_alive.load(); }, &runner.latency(),
           [&](const schemas::Event& e) { return writer.append(e, std::nullopt, std::chrono::seconds(10)); },
           &runner.batch_seconds()},
          metrics);
  // Bind before any thread starts: a taken port must stop start-up, not leave a hub without an API.
  HttpServer server(config.http.host, config.http.port, [&](const HttpRequest& r) { return api.handle(r); });

  std::jthread runner_thread([&](std::stop_token) {
    try {
      runner.run(stopping.get_token());
    } catch (...) {
      runner_error = std::current_exception();
    }
    runner_alive = false;
    stopping.request_stop();  // the API must not serve a store nobody updates
  });
  std::stop_callback forward(stop, [&] { stopping.request_stop(); });
  std::jthread ticker([&](std::stop_token) {
    writer.run_ticks(stopping.get_token(), std::chrono::milliseconds(config.hub.tick_interval_ms));
  });

  spdlog::info("hub: API on http://{}:{}/ (state in {})", config.http.host, server.port(), store_config.dir);
  if (on_listening) on_listening(server.port());
  server.run(stopping.get_token());
  runner_thread.join();
  ticker.join();
  if (runner_error) std::rethrow_exception(runner_error);
}

}  // namespace courtyard::hub
