// bench/ws: many dashboards subscribed over WebSocket while the simulator drives the community.
// Reports the device-publish -> dashboard update latency (p50/p99) next to the device-publish ->
// projection-commit latency of the same run (the baseline: what the subscriptions add), the
// updates delivered, coalesced and dropped, and the hub's memory before, during and after.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "devices/simulator.h"
#include "http_client.h"
#include "options.h"
#include "scrape.h"

using namespace courtyard;
using namespace std::chrono_literals;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

struct Args {
  int mqtt_port = 1883, kafka_port = 9092, http_port = 8080, hub_pid = 0;
  std::string password_file, token;
  double rate = 1000, seconds = 20;
  std::size_t devices = 300, subscribers = 1000;
  int rounds = 1;  // connect, drive, close; more than one shows whether memory comes back
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

long rss_kb(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

double metric(const Args& a, const std::string& name) {
  auto text = test::http_get_text(a.http_port, "/metrics", a.token);
  auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

// One dashboard: its community's alerts and figures, and one device it watches.
class Dashboard : public std::enable_shared_from_this<Dashboard> {
 public:
  Dashboard(asio::io_context& io, const Args& a, std::vector<std::string> subscribe, Histogram& latency,
            std::atomic<std::uint64_t>& updates, std::atomic<int>& ready)
      : ws_(io), args_(a), subscribe_(std::move(subscribe)), latency_(latency), updates_(updates), ready_(ready) {}

  void start() {
    beast::get_lowest_layer(ws_).async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(args_.http_port)),
        [self = shared_from_this()](beast::error_code ec) {
          if (ec) return self->fail("connect", ec);
          self->ws_.set_option(websocket::stream_base::decorator([token = self->args_.token](websocket::request_type& req) {
            req.set(beast::http::field::sec_websocket_protocol, "courtyard.v1, bearer." + token);
          }));
          self->ws_.async_handshake("127.0.0.1", "/api/v1/subscribe",
                                    [self](beast::error_code ec) {
                                      if (ec) return self->fail("handshake", ec);
                                      for (const auto& message : self->subscribe_) self->send(message);
                                      self->read();
                                    });
        });
  }
  void close() {
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {});
  }

 private:
  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      self->on_frame(beast::buffers_to_string(self->buffer_.data()));
      self->buffer_.consume(self->buffer_.size());
      self->read();
    });
  }
  // Parses only frames that carry the watched device: the dashboards share two cores with the hub.
  void on_frame(const std::string& text) {
    if (!text.starts_with(R"({"type":"changes")")) {  // hello, snapshots, errors: rare
      auto j = nlohmann::json::parse(text, nullptr, false);
      if (j.value("type", "") == "snapshot" && ++snapshots_ == subscribe_.size()) ++ready_;
      if (j.value("type", "") == "error") {
        // One token serves every dashboard here, and the hub builds only a few snapshots of one
        // token at once: a dashboard told so subscribes again shortly, as the answer asks.
        if (j.value("error", "") == "too_many_requests") return retry(j.value("id", ""));
        std::cerr << "dashboard refused: " << text.substr(0, 300) << "\n";
      }
      return;
    }
    for (auto at = text.find(R"({"key":)"); at != std::string::npos; at = text.find(R"({"key":)", at + 1)) ++updates_;
    if (text.find(R"({"key":"devices/)") == std::string::npos) return;
    auto now = now_ms();
    auto j = nlohmann::json::parse(text, nullptr, false);
    for (const auto& c : j["changes"]) {
      if (c["key"].get<std::string>().starts_with("devices/")) {
        latency_.observe(static_cast<double>(now - c["value"].value("last_device_time", now)) / 1000.0);
      }
    }
  }
  void retry(const std::string& id) {
    for (const auto& message : subscribe_) {
      if (nlohmann::json::parse(message).value("id", "") != id) continue;
      auto timer = std::make_shared<asio::steady_timer>(ws_.get_executor(), std::chrono::milliseconds(50 + std::rand() % 200));
      timer->async_wait([self = shared_from_this(), timer, message](beast::error_code ec) {
        if (!ec) self->send(message);
      });
      return;
    }
  }
  // Every frame this dashboard writes goes through one queue: one write at a time on the socket.
  void send(const std::string& message) {
    pending_.push_back(message);
    if (pending_.size() == 1) write_pending();
  }
  void write_pending() {
    ws_.async_write(asio::buffer(pending_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->fail("write", ec);
      self->pending_.pop_front();
      if (!self->pending_.empty()) self->write_pending();
    });
  }
  void fail(const char* what, beast::error_code ec) { std::cerr << "dashboard " << what << ": " << ec.message() << "\n"; }

  websocket::stream<beast::tcp_stream> ws_;
  const Args& args_;
  std::vector<std::string> subscribe_;
  Histogram& latency_;
  std::atomic<std::uint64_t>& updates_;
  std::atomic<int>& ready_;
  beast::flat_buffer buffer_;
  std::deque<std::string> pending_;
  std::size_t snapshots_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"bench_ws: dashboards subscribed over WebSocket under load (run through bench/ws)"};
  bench::add_service_options(app, a);
  app.add_option("--hub-pid", a.hub_pid, "the hub's process, for its memory");
  app.add_option("--rate", a.rate, "offered events/s");
  app.add_option("--seconds", a.seconds, "how long each round drives the fleet");
  app.add_option("--devices", a.devices, "fleet size");
  app.add_option("--subscribers", a.subscribers, "dashboards");
  app.add_option("--rounds", a.rounds, "connect, drive, close this many times");
  CLI11_PARSE(app, argc, argv);
  auto password = read_secret(a.password_file);
  if (!password) {
    std::cerr << password.error() << "\n";
    return 1;
  }
  devices::SimulatorConfig sim;
  sim.kafka = bench::kafka_as("hub", a.kafka_port, a.password_file);
  sim.mqtt.port = a.mqtt_port;
  sim.mqtt_password = *password;
  std::string run = "wsbench" + std::to_string(::getpid());
  sim.communities = {run + "-a", run + "-b"};
  sim.devices = a.devices;
  sim.rate = a.rate;
  sim.duration_s = a.seconds;
  sim.bad_fraction = 0;
  std::vector<std::string> fleet;
  {
    devices::Simulator simulator(sim);
    for (const auto& d : simulator.fleet()) fleet.push_back(d.registration.device.str());
  }
  std::printf("%-6s %11s %12s %12s %12s %12s %10s %10s %9s %9s %9s %9s\n", "round", "dashboards", "commit p50", "commit p99",
              "update p50", "update p99", "updates/s", "coalesced", "RSS idle", "RSS subs", "RSS run", "RSS closed");
  bool complete = true;
  for (int round = 1; round <= a.rounds; ++round) {
    // The fleet runs in a child forked before this process opens its thousand sockets (libmosquitto's
    // loop uses select(), which cannot watch descriptors numbered 1024 or above). Each round is a new
    // boot of the same devices, so their seqs count afresh.
    int go[2];
    if (::pipe(go) != 0) return 1;
    const pid_t fleet_pid = ::fork();
    if (fleet_pid == 0) {
      ::close(go[1]);
      auto config = sim;
      config.boot = static_cast<std::uint32_t>(round);
      devices::Simulator simulator(config);
      auto provisioned = simulator.provision();
      if (!provisioned) std::cerr << "provisioning: " << provisioned.error() << "\n";
      char start = 0;
      if (!provisioned || ::read(go[0], &start, 1) != 1) ::_exit(3);
      auto sent = simulator.run(std::stop_token{});
      if (!sent) std::cerr << "simulator: " << sent.error() << "\n";
      ::_exit(sent ? 0 : 1);
    }
    ::close(go[0]);
    std::this_thread::sleep_for(5s);  // the fleet is provisioned and the hub knows it
    const long rss_idle = rss_kb(a.hub_pid);

    Histogram latency({0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                       0.5, 0.75, 1, 1.5, 2, 3, 5, 10});
    std::atomic<std::uint64_t> updates{0};
    std::atomic<int> ready{0};
    asio::io_context io;
    std::vector<std::shared_ptr<Dashboard>> dashboards;
    for (std::size_t i = 0; i < a.subscribers; ++i) {
      const std::string community = sim.communities[i % sim.communities.size()];
      std::vector<std::string> subscribe = {
          nlohmann::json{{"op", "subscribe"}, {"id", "alerts"}, {"prefix", "alerts/" + community + ":"}}.dump(),
          nlohmann::json{{"op", "subscribe"}, {"id", "figures"}, {"prefix", "communities/" + community + "/"}}.dump(),
          nlohmann::json{{"op", "subscribe"}, {"id", "device"}, {"key", "devices/" + fleet[i % fleet.size()]}}.dump()};
      dashboards.push_back(std::make_shared<Dashboard>(io, a, std::move(subscribe), latency, updates, ready));
      dashboards.back()->start();
    }
    std::jthread io_thread([&] { io.run(); });
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (ready < static_cast<int>(a.subscribers) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    const int connected = ready.load();
    complete &= connected == static_cast<int>(a.subscribers);
    const long rss_subscribed = rss_kb(a.hub_pid);
    std::cerr << "round " << round << ": " << connected << " dashboards subscribed; driving " << a.devices
              << " devices at " << a.rate << "/s for " << a.seconds << " s...\n";

    auto commit_before = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
    const double coalesced_before = metric(a, "courtyard_ws_updates_coalesced_total");
    int fleet_status = 0;
    if (::write(go[1], "s", 1) == 1) ::waitpid(fleet_pid, &fleet_status, 0);
    ::close(go[1]);
    if (!WIFEXITED(fleet_status) || WEXITSTATUS(fleet_status) != 0) {
      io.stop();
      return 1;
    }
    std::this_thread::sleep_for(2s);  // the last changes reach the dashboards
    auto commit_after = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
    const long rss_loaded = rss_kb(a.hub_pid);
    const double coalesced = metric(a, "courtyard_ws_updates_coalesced_total") - coalesced_before;
    asio::post(io, [&] {
      for (auto& d : dashboards) d->close();
    });
    deadline = std::chrono::steady_clock::now() + 30s;
    while (metric(a, "courtyard_ws_connections") > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);
    }
    io.stop();
    io_thread.join();
    dashboards.clear();
    const long rss_closed = rss_kb(a.hub_pid);

    auto delta = bench::between(commit_before.second, commit_after.second);
    const double commit_p50 = histogram_quantile(commit_after.first, delta, 0.5) * 1000;
    const double commit_p99 = histogram_quantile(commit_after.first, delta, 0.99) * 1000;
    const double update_p50 = histogram_quantile(latency.bounds(), latency.counts(), 0.5) * 1000;
    const double update_p99 = histogram_quantile(latency.bounds(), latency.counts(), 0.99) * 1000;
    std::printf("%-6d %11d %12.1f %12.1f %12.1f %12.1f %10.0f %10.0f %8ldM %8ldM %8ldM %8ldM\n", round, connected,
                commit_p50, commit_p99, update_p50, update_p99, static_cast<double>(updates.load()) / a.seconds, coalesced,
                rss_idle / 1024, rss_subscribed / 1024, rss_loaded / 1024, rss_closed / 1024);
    std::fflush(stdout);
    nlohmann::json summary{{"round", round},                {"subscribers", connected},       {"offered_rate", a.rate},
                           {"seconds", a.seconds},          {"commit_p50_ms", commit_p50},    {"commit_p99_ms", commit_p99},
                           {"update_p50_ms", update_p50},   {"update_p99_ms", update_p99},    {"updates", updates.load()},
                           {"coalesced", coalesced},        {"dropped", metric(a, "courtyard_ws_updates_dropped_total")},
                           {"disconnected_slow", metric(a, "courtyard_ws_disconnected_slow_total")},
                           {"rss_idle_kb", rss_idle},       {"rss_subscribed_kb", rss_subscribed},
                           {"rss_loaded_kb", rss_loaded},   {"rss_closed_kb", rss_closed}};
    std::cerr << summary.dump() << "\n";
  }
  std::printf("(ms: device publish -> projection commit, the baseline, and -> update received by every dashboard; "
              "RSS of the hub in MiB: before the dashboards, subscribed, after the run, after they all closed)\n");
  return complete ? 0 : 2;
}
