#include "hub/hub.h"

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "audit.h"
#include "http_server.h"
#include "log_writer.h"
#include "hub/api.h"
#include "processors/runner.h"
#include "processors/store.h"
#include "processors/vision_worker.h"
#include "common/random.h"
#include "devices/provisioner.h"
#include "hub/access.h"
#include "subscriptions.h"

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
  HttpServer* server_ptr = nullptr;  // set before the runner starts; the server outlives it
  runner_config.on_commit = [&server_ptr](std::uint64_t seq, processors::KeyValues changes) {
    server_ptr->publish(seq, std::move(changes));
  };
  processors::Runner runner(runner_config, **store);

  std::stop_source stopping;
  std::atomic<bool> runner_alive{true};
  std::exception_ptr runner_error;
  LogWriter writer(config.kafka);
  Metrics metrics;
  TokenStore tokens(config.var_path(config.http.tokens_file));
  SubscriptionLimits limits;
  limits.max_pending_keys = static_cast<std::size_t>(config.http.ws_max_pending);
  limits.frame_interval = std::chrono::milliseconds(config.http.ws_frame_interval_ms);
  // The hub's own events (operator actions, commands, vision analyses) go through ingest.
  auto append_to_log = [&writer](const schemas::Event& e) { return writer.append(e, std::nullopt, std::chrono::seconds(10)); };
  SubscriptionHub subscriptions(**store, [&] { return runner.committed(); }, limits);
  ApiSources sources{store->get(), [&] { return runner.freshness(); }, [&] { return runner.stats(); },
                     [&] { return runner_alive.load(); }, &runner.latency(),
                     append_to_log,
                     &runner.batch_seconds()};
  sources.tokens = &tokens;
  sources.web_root = config.http.web_root;
  sources.more_metrics = [&] { return subscriptions.render_metrics(); };
  sources.provision = [&config](const schemas::Registration& r) -> std::expected<std::string, std::string> {
    auto password = read_secret(config.var_path(config.mqtt.password_file).string());
    if (!password) return std::unexpected(password.error());
    auto provisioner = devices::Provisioner::connect({config.kafka, config.mqtt, *password});
    if (!provisioner) return std::unexpected(provisioner.error());
    devices::NewDevice request{r, ""};
    auto passwords = (*provisioner)->add(std::span(&request, 1));
    if (!passwords) return std::unexpected(passwords.error());
    return passwords->front();
  };
  // As-of stores, built on demand from checkpoints and the log, the last few kept.
  std::mutex as_of_mu;
  std::map<std::int64_t, std::shared_ptr<const processors::Store>> as_of_cache;
  sources.as_of = [&](std::int64_t at) -> std::expected<std::shared_ptr<const processors::Store>, std::string> {
    std::lock_guard lock(as_of_mu);
    if (auto it = as_of_cache.find(at); it != as_of_cache.end()) return it->second;
    const std::string dir = config.var_path("hub/as-of/" + std::to_string(at)).string();
    std::filesystem::remove_all(dir);
    auto built = replay::build_as_of(replay_config(config, dir), config.var_path("hub/checkpoints").string(), at);
    if (!built) return std::unexpected(built.error());
    processors::StoreConfig sc;
    sc.dir = dir;
    sc.read_only = true;
    sc.block_cache_bytes = 8 << 20;
    auto opened = processors::Store::open(sc);
    if (!opened) return std::unexpected(opened.error());
    if (as_of_cache.size() >= 4) as_of_cache.erase(as_of_cache.begin());
    return as_of_cache[at] = std::shared_ptr<const processors::Store>(std::move(*opened));
  };
  // The vision processor: its own consumer group, `vision.workers` snapshots at a time.
  std::unique_ptr<processors::SnapshotImages> images;
  std::unique_ptr<processors::VisionWorker> vision;
  if (config.vision.enabled) {
    const std::string dir = config.var_path("hub/snapshots").string();
    std::filesystem::create_directories(dir);
    auto opened = processors::SnapshotImages::open(dir);
    if (!opened) throw std::runtime_error(opened.error());
    images = std::move(*opened);
    auto key = read_or_create_secret(config.var_path(config.vision.plate_key_file).string());
    if (!key) throw std::runtime_error("vision: " + key.error());
    processors::VisionWorkerConfig vc;
    vc.kafka = config.kafka;
    vc.group_id = config.vision.group_id;
    vc.instance_id = config.hub.instance_id + "-vision";
    vc.workers = static_cast<unsigned>(std::max<std::int64_t>(1, config.vision.workers));
    vc.vision.min_face_px = static_cast<int>(config.vision.min_face_px);
    vc.plate_key = *key;
    vc.retention = std::chrono::minutes(config.vision.snapshot_retention_minutes);
    vision = std::make_unique<processors::VisionWorker>(vc, *images, append_to_log);
    sources.snapshot_image = [&images](std::uint64_t id) -> std::optional<ApiSources::SnapshotImage> {
      auto image = images->get(id);
      if (!image) return std::nullopt;
      return ApiSources::SnapshotImage{std::move(image->community), std::move(image->camera), std::move(image->jpeg)};
    };
    auto more = std::move(sources.more_metrics);
    sources.more_metrics = [more, &vision, &images] {
      const auto s = vision->stats();
      Metrics m;  // the worker's counters as they are now, in the same text format as the rest
      m.describe("courtyard_vision_snapshots_total", "counter", "Camera snapshots analysed, by outcome.");
      m.set("courtyard_vision_snapshots_total", {{"outcome", "analysed"}}, static_cast<double>(s.analysed - s.unreadable));
      m.set("courtyard_vision_snapshots_total", {{"outcome", "unreadable"}}, static_cast<double>(s.unreadable));
      m.describe("courtyard_vision_faces_total", "counter", "Faces found (and blurred).");
      m.set("courtyard_vision_faces_total", {}, static_cast<double>(s.faces));
      m.describe("courtyard_vision_plates_total", "counter", "Plates read.");
      m.set("courtyard_vision_plates_total", {}, static_cast<double>(s.plates));
      m.describe("courtyard_vision_images_kept", "gauge", "Blurred snapshots held (within their retention).");
      m.set("courtyard_vision_images_kept", {}, static_cast<double>(images->count()));
      return (more ? more() : std::string()) + m.render() +
             vision->latency().render("courtyard_vision_latency_seconds", "Snapshot ingest to its analysis in the log.");
    };
  }
  Api api(std::move(sources), metrics);
  // Bind before any thread starts: a taken port must stop start-up, not leave a hub without an API.
  HttpServer server(config.http.host, config.http.port, api, &subscriptions);
  server_ptr = &server;

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
  Auditor auditor(config, **store, writer);
  std::jthread audit_thread([&](std::stop_token) { auditor.run(stopping.get_token()); });

  std::jthread vision_thread;
  if (vision) {
    vision_thread = std::jthread([&](std::stop_token) {
      try {
        vision->run(stopping.get_token());
      } catch (const std::exception& e) {
        spdlog::error("vision stopped: {}", e.what());  // the event path and the API go on without it
      }
    });
  }
  spdlog::info("hub: API on http://{}:{}/ (state in {})", config.http.host, server.port(), store_config.dir);
  if (on_listening) on_listening(server.port());
  server.run(stopping.get_token());
  runner_thread.join();
  ticker.join();
  audit_thread.join();
  if (vision_thread.joinable()) vision_thread.join();
  if (runner_error) std::rethrow_exception(runner_error);
}

}  // namespace courtyard::hub
