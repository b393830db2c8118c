#include "hub/hub.h"

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "audit.h"
#include "http_server.h"
#include "loops.h"
#include "notifier.h"
#include "privacy_sweep.h"
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
  // A store another version wrote is rebuilt from the log before anything reads it (decision 0021).
  auto rebuild = replay_config(config, store_config.dir);
  rebuild.on_progress = [](const replay::Progress& p) {
    spdlog::info("hub: rebuilding the store from the log: {} of {} messages, {:.0f} s", p.messages, p.total, p.seconds);
  };
  spdlog::info("hub: store {} (format {})", store_config.dir, processors::Projector::kStoreFormat);
  auto reformat = replay::ensure_store_format(std::move(rebuild));
  if (!reformat) throw std::runtime_error("the store is of another version's format and could not be rebuilt: " + reformat.error());
  if (*reformat) {
    spdlog::warn("hub: the store was of format {}: rebuilt as format {} from {} messages of the log in {:.1f} s; its "
                 "{} unsent alert(s) and command(s) kept",
                 (*reformat)->from, processors::Projector::kStoreFormat, (*reformat)->summary.messages,
                 (*reformat)->summary.seconds, (*reformat)->outbox_kept);
  }
  auto store = processors::Store::open(store_config);
  if (!store) throw std::runtime_error((store.error()));

  processors::RunnerConfig runner_config;
  runner_config.kafka = config.kafka;
  runner_config.group_id = config.hub.group_id;
  runner_config.instance_id = config.hub.instance_id;
  runner_config.rules = load_rules(config.hub.rules_file);
  runner_config.context.utc_offset_min = config.hub.utc_offset_minutes;
  runner_config.notify_webhook = !config.notify.webhook_url.empty();
  runner_config.max_batch = static_cast<std::size_t>(config.hub.max_batch);
  runner_config.fold_lanes = static_cast<std::size_t>(std::max<std::int64_t>(0, config.hub.fold_lanes));
  runner_config.changelog = config.hub.cluster;
  runner_config.fold = config.hub.role != "api";
  runner_config.standby = config.hub.standby;
  const bool serves_reads = config.hub.role != "processors";
  runner_config.session_timeout = std::chrono::milliseconds(std::max<std::int64_t>(1000, config.hub.session_timeout_ms));
  runner_config.restore_timeout = std::chrono::milliseconds(std::max<std::int64_t>(1000, config.hub.restore_timeout_ms));
  HttpServer* server_ptr = nullptr;  // set before the runner starts; the server outlives it
  runner_config.on_commit = [&server_ptr](std::uint64_t seq, processors::KeyValues changes) {
    server_ptr->publish(seq, std::move(changes));
  };
  processors::Runner runner(runner_config, **store);

  std::stop_source stopping;
  std::atomic<bool> runner_alive{true};
  LogWriter writer(config.kafka);
  Metrics metrics;
  TokenStore tokens(config.var_path(config.http.tokens_file));
  SubscriptionLimits limits;
  limits.max_pending_keys = static_cast<std::size_t>(config.http.ws_max_pending);
  limits.frame_interval = std::chrono::milliseconds(config.http.ws_frame_interval_ms);
  // The hub's own events (operator actions, commands, vision analyses) go through ingest.
  // The vision worker needs a confirmation (it retries until it has one); the API answers an
  // operator after 10 s either way, saying whether Kafka confirmed (decision: docs/api.md).
  auto append_to_log = [&writer](const schemas::Event& e) { return writer.append(e, std::chrono::seconds(10)); };
  auto append_for_api = [&writer](const schemas::Event& e) {
    return writer.append(e, std::chrono::seconds(10), /*may_stay_queued=*/true);
  };
  SubscriptionHub subscriptions(**store, [&] { return runner.committed(); }, limits);
  ApiSources sources{store->get(), [&] { return runner.freshness(); }, [&] { return runner.stats(); },
                     [&] { return runner_alive.load(); }, &runner.latency(),
                     append_for_api,
                     &runner.batch_seconds()};
  sources.tokens = &tokens;
  sources.serves_reads = serves_reads;
  // The privacy vault: where the API reads and records personal fields (docs/privacy.md).
  std::optional<Vault> vault;
  if (serves_reads) {
    auto opened = Vault::open(config.var_path(config.privacy.keys_dir), config.var_path(config.privacy.master_key_file));
    if (!opened) throw std::runtime_error(opened.error());
    vault.emplace(std::move(*opened));
    sources.vault = &*vault;
  }
  sources.utc_offset_min = config.hub.utc_offset_minutes;
  if (config.hub.cluster) sources.changelog_progress = [&] { return runner.changelog_progress(); };
  sources.web_root = config.http.web_root;
  sources.more_metrics = [&] { return subscriptions.render_metrics(); };
  // One provisioning at a time: two requests for one new id never race each other.
  std::mutex provision_mu;
  sources.provision = [&config, &provision_mu](const schemas::Registration& r, bool rotate) -> std::expected<std::string, HttpResponse> {
    auto refusal = [](int status, const char* code, const std::string& detail) {
      return std::unexpected(HttpResponse{status, "application/json",
                                          nlohmann::json{{"error", code}, {"detail", detail}}.dump() + "\n"});
    };
    std::lock_guard lock(provision_mu);
    auto password = read_secret(config.var_path(config.mqtt.password_file).string());
    if (!password) return refusal(503, "unavailable", password.error());
    auto provisioner = devices::Provisioner::connect({config.kafka, config.mqtt, *password});
    if (!provisioner) return refusal(503, "unavailable", "provisioning: " + provisioner.error());
    devices::NewDevice request{r, ""};
    auto passwords = (*provisioner)->add(std::span(&request, 1), rotate ? devices::IfExists::Rotate : devices::IfExists::Refuse);
    if (!passwords) {
      using Code = devices::ProvisionError::Code;
      switch (passwords.error().code) {
        case Code::Invalid: return refusal(400, "bad_request", passwords.error().detail);
        case Code::Reserved: return refusal(403, "forbidden", passwords.error().detail);
        case Code::Conflict: return refusal(409, "conflict", passwords.error().detail);
        case Code::Unavailable: return refusal(503, "unavailable", "provisioning failed: " + passwords.error().detail);
      }
    }
    return passwords->front();
  };
  // As-of stores, built on demand from checkpoints and the log, one at a time; the last few are
  // kept for repeated queries, and a store leaves the disk once evicted and no longer read.
  const std::filesystem::path as_of_root = config.var_path("hub/as-of");
  std::filesystem::remove_all(as_of_root);  // a previous run's are nobody's now
  std::mutex as_of_mu, as_of_build_mu;
  std::map<std::int64_t, std::shared_ptr<const processors::Store>> as_of_cache;
  const auto as_of_keep = static_cast<std::size_t>(std::max<std::int64_t>(1, config.http.as_of_stores_keep));
  sources.as_of = [&](std::int64_t at) -> std::expected<std::shared_ptr<const processors::Store>, std::string> {
    {
      std::lock_guard lock(as_of_mu);
      if (auto it = as_of_cache.find(at); it != as_of_cache.end()) return it->second;
    }
    std::unique_lock build(as_of_build_mu, std::try_to_lock);
    if (!build) return std::unexpected(std::string("busy: another as-of query is being built; try again shortly"));
    const std::string dir = (as_of_root / (std::to_string(at) + "-" + random_token(4))).string();
    auto built = replay::build_as_of(replay_config(config, dir), config.var_path("hub/checkpoints").string(), at);
    if (!built) {
      std::filesystem::remove_all(dir);
      return std::unexpected(built.error());
    }
    processors::StoreConfig sc;
    sc.dir = dir;
    sc.read_only = true;
    sc.block_cache_bytes = 8 << 20;
    auto opened = processors::Store::open(sc);
    if (!opened) {
      std::filesystem::remove_all(dir);
      return std::unexpected(opened.error());
    }
    std::shared_ptr<const processors::Store> store(opened->release(), [dir](const processors::Store* s) {
      delete s;
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
    std::lock_guard lock(as_of_mu);
    while (as_of_cache.size() >= as_of_keep) as_of_cache.erase(as_of_cache.begin());
    return as_of_cache[at] = std::move(store);
  };
  // The vision processor: its own consumer group, `vision.workers` snapshots at a time.
  std::unique_ptr<processors::SnapshotImages> images;
  std::unique_ptr<processors::VisionWorker> vision;
  if (config.vision.enabled && runner_config.fold) {  // analysing snapshots is processing: not an api hub's
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
  ServerLimits server_limits;
  server_limits.max_connections = static_cast<std::size_t>(std::max<std::int64_t>(1, config.http.max_connections));
  server_limits.max_connections_per_address =
      static_cast<std::size_t>(std::max<std::int64_t>(1, config.http.max_connections_per_address));
  server_limits.max_websockets_per_token = static_cast<std::size_t>(std::max<std::int64_t>(1, config.http.max_websockets_per_token));
  server_limits.workers = static_cast<std::size_t>(std::max<std::int64_t>(1, config.http.workers));
  server_limits.max_queued = static_cast<std::size_t>(std::max<std::int64_t>(1, config.http.max_queued_requests));
  server_limits.max_per_credential = static_cast<std::size_t>(std::max<std::int64_t>(1, config.http.max_requests_per_token));
  server_limits.write_timeout = std::chrono::milliseconds(std::max<std::int64_t>(100, config.http.write_timeout_ms));
  HttpServer* metrics_server = nullptr;
  {
    auto more = std::move(sources.more_metrics);
    sources.more_metrics = [more, &metrics_server] {
      return (more ? more() : std::string()) + (metrics_server ? metrics_server->render_metrics() : std::string());
    };
  }
  Api api(std::move(sources), metrics);
  // Bind before any thread starts: a taken port must stop start-up, not leave a hub without an API.
  HttpServer server(config.http.host, config.http.port, api, serves_reads ? &subscriptions : nullptr, server_limits);
  server_ptr = &server;
  metrics_server = &server;

  Loops loops(stopping);
  std::jthread runner_thread = loops.start("the processors", [&] {
    try {
      runner.run(stopping.get_token());
    } catch (...) {
      runner_alive = false;  // the API must not serve a store nobody updates
      throw;
    }
    runner_alive = false;
  });
  std::stop_callback forward(stop, [&] { stopping.request_stop(); });
  Auditor auditor(config, **store, writer);
  std::jthread audit_thread = loops.start("the auditor", [&] { auditor.run(stopping.get_token()); });
  std::jthread vision_thread;
  if (vision) vision_thread = loops.start("the vision processor", [&] { vision->run(stopping.get_token()); });
  // The webhook sender: only where a webhook is configured (one hub of a cluster should carry it).
  std::optional<Notifier> notifier;
  std::jthread notifier_thread;
  if (!config.notify.webhook_url.empty()) {
    auto secret = read_or_create_secret(config.var_path(config.notify.webhook_secret_file).string());
    if (!secret) throw std::runtime_error("notify.webhook_secret_file: " + secret.error());
    NotifierConfig nc{config.notify.webhook_url, *secret, static_cast<int>(config.notify.webhook_attempts),
                      std::chrono::milliseconds(config.notify.webhook_timeout_ms),
                      std::chrono::milliseconds(config.notify.webhook_backoff_ms)};
    notifier.emplace(std::move(nc), **store,
                     [&](const schemas::Event& e) { return writer.append(e, std::chrono::seconds(10)).has_value(); });
    notifier_thread = loops.start("the webhook sender", [&] { notifier->run(stopping.get_token()); });
  }
  std::jthread privacy_thread;
  if (vault) {
    privacy_thread = loops.start("the retention sweep", [&] {
      std::mutex mu;
      std::condition_variable_any wake;
      const auto token = stopping.get_token();
      // The sweep decides from the projections and cannot undo what it destroys: it runs only once
      // the store has folded every partition up to where the log ended when it began (a store
      // still rebuilding or restoring would not know that a visitor has since become a resident).
      auto store_reached_log = [&] {
        const auto progress = runner.changelog_progress();
        if (progress && !progress->restored) return false;
        const auto wanted = runner.freshness();
        if (runner_config.fold && wanted.empty()) return false;  // no partitions yet
        for (int i = 0; i < 600 && !token.stop_requested(); ++i) {
          const auto now = runner.freshness();
          bool reached = true;
          for (const auto& [tp, f] : wanted) {
            auto it = now.find(tp);
            reached &= it != now.end() && it->second.next_offset >= f.high_watermark;
          }
          if (reached) return true;
          std::unique_lock lock(mu);
          wake.wait_for(lock, token, std::chrono::milliseconds(100), [] { return false; });
        }
        return false;
      };
      while (!token.stop_requested()) {
        if (store_reached_log()) {
          const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
          sweep(**store, *vault, now, {config.privacy.visitor_retention_days},
                [&](const schemas::Event& e) { return writer.append(e, std::chrono::seconds(10)).has_value(); });
        }
        std::unique_lock lock(mu);
        wake.wait_for(lock, token, std::chrono::seconds(config.privacy.sweep_interval_s), [] { return false; });
      }
    });
  }

  spdlog::info("hub: API on http://{}:{}/ (state in {})", config.http.host, server.port(), store_config.dir);
  if (on_listening) on_listening(server.port());
  auto serve = [&] { server.run(stopping.get_token()); };
  loops.guard("the HTTP server", serve);
  runner_thread.join();
  audit_thread.join();
  if (vision_thread.joinable()) vision_thread.join();
  if (privacy_thread.joinable()) privacy_thread.join();
  if (notifier_thread.joinable()) notifier_thread.join();
  loops.rethrow_first();
}

}  // namespace courtyard::hub
