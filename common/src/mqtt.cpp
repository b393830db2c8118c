#include "common/mqtt.h"

#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>

#include <atomic>
#include <thread>

#include <mqtt_protocol.h>
#include <poll.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "common/handles.h"

namespace courtyard {
namespace {

struct LibraryInit {
  LibraryInit() { mosquitto_lib_init(); }
  ~LibraryInit() { mosquitto_lib_cleanup(); }
};

void ensure_library() { static LibraryInit init; }

}  // namespace

std::expected<std::string, std::string> read_secret(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::unexpected("cannot read secret file " + path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  if (line.empty()) return std::unexpected("secret file " + path + " is empty");
  return line;
}

struct MqttClient::State {
  MosquittoPtr mosq;
  mutable std::mutex mu;
  std::condition_variable cv;
  // Connection
  bool connack = false;
  int connect_rc = -1;
  bool is_connected = false;
  // Subscriptions: mid -> granted
  std::map<int, bool> suback;
  // Publishes awaited individually: mid -> reason code (-1 until acked)
  std::map<int, int> awaited;
  std::uint64_t published = 0, acked = 0, refused = 0;
  std::deque<MqttMessage> inbox;
  Handler handler;
  Options options;
  bool loop_started = false;
  // What subscribe() asked for: asked again when the broker comes back without the session (a
  // broker crash can lose what it had not yet saved), or a persistent subscriber hears nothing.
  std::vector<std::pair<std::string, int>> subscriptions;
  bool ever_connected = false;
  // Our own network loop (Options::before_acknowledging): its thread, and whether a message was
  // taken since the last before_acknowledging (network thread only).
  std::jthread own_loop;
  bool taken = false;

  void drive(std::stop_token stop);

  static State* of(void* obj) { return static_cast<State*>(obj); }
};

MqttClient::MqttClient(std::unique_ptr<State> state) : state_(std::move(state)) {}

// Reads every message the socket holds (each to the handler, its PUBACK queued, not written),
// calls before_acknowledging once, then writes: the PUBACKs leave only after it. Reconnects
// sooner than libmosquitto's loop (250 ms, doubling to 2 s): a broker that restarted without our
// session routes devices' messages to nobody until we subscribe again. Publishes from other
// threads are queued by libmosquitto (threaded mode) and written by the next round, at most 5 ms
// later.
void MqttClient::State::drive(std::stop_token stop) {
  mosquitto* m = mosq.get();
  int delay_ms = 250;
  while (!stop.stop_requested()) {
    int rc = MOSQ_ERR_NO_CONN;
    if (const int sock = mosquitto_socket(m); sock >= 0) {
      pollfd p{sock, static_cast<short>(POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)), 0};
      ::poll(&p, 1, 5);
      rc = MOSQ_ERR_SUCCESS;
      for (int i = 0; i < 4096 && rc == MOSQ_ERR_SUCCESS; ++i) {
        pollfd readable{sock, POLLIN, 0};
        if (::poll(&readable, 1, 0) <= 0) break;
        rc = mosquitto_loop_read(m, 1);
      }
      if (taken) {
        taken = false;
        if (!options.before_acknowledging()) {
          // None of their PUBACKs may leave: the broker keeps the messages. The socket as it is
          // now: a failed read may have closed it already (its number may belong to another file).
          if (const int now = mosquitto_socket(m); now >= 0) ::shutdown(now, SHUT_RDWR);
          rc = MOSQ_ERR_CONN_LOST;
        }
      }
      if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(m)) rc = mosquitto_loop_write(m, 1);
      if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(m);
      if (rc == MOSQ_ERR_SUCCESS) {
        delay_ms = 250;
        continue;
      }
    }
    {
      std::lock_guard lock(mu);
      is_connected = false;
      cv.notify_all();
    }
    for (int waited = 0; waited < delay_ms && !stop.stop_requested(); waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (stop.stop_requested()) break;
    if (mosquitto_reconnect(m) != MOSQ_ERR_SUCCESS) delay_ms = std::min(delay_ms * 2, 2000);
  }
}

MqttClient::~MqttClient() { close(); }

void MqttClient::close() {
  if (state_ && state_->own_loop.joinable()) {
    state_->own_loop.request_stop();
    state_->own_loop.join();
    mosquitto_disconnect_v5(state_->mosq.get(), 0, nullptr);
    mosquitto_loop_write(state_->mosq.get(), 1);
    return;
  }
  if (!state_ || !state_->mosq || !state_->loop_started) return;
  state_->loop_started = false;
  mosquitto_disconnect_v5(state_->mosq.get(), 0, nullptr);
  // A refused or unanswered connection leaves the loop retrying: force it to stop.
  mosquitto_loop_stop(state_->mosq.get(), !state_->is_connected);
}

std::expected<std::unique_ptr<MqttClient>, std::string> MqttClient::create(const Options& options) {
  ensure_library();
  auto state = std::make_unique<State>();
  State* s = state.get();
  state->handler = options.handler;
  state->options = options;
  state->mosq.reset(mosquitto_new(options.client_id.empty() ? nullptr : options.client_id.c_str(),
                                  options.clean_start, s));
  if (!state->mosq) return std::unexpected(std::string("mosquitto_new failed"));
  mosquitto* m = state->mosq.get();
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, 1000);
  // Our own loop: publishes from other threads are queued, never written by the caller.
  if (options.before_acknowledging) mosquitto_threaded_set(m, true);
  mosquitto_reconnect_delay_set(m, 1, 5, false);  // after a lost connection: 1 s, 2 s, ... at most 5 s
  if (!options.username.empty()) {
    mosquitto_username_pw_set(m, options.username.c_str(), options.password.c_str());
  }
  mosquitto_connect_v5_callback_set(m, [](mosquitto* mosq, void* obj, int rc, int flags, const mosquitto_property*) {
    auto* st = State::of(obj);
    std::lock_guard lock(st->mu);
    const bool session_present = flags & 1;
    if (rc == 0 && st->ever_connected && !session_present) {
      for (const auto& [pattern, qos] : st->subscriptions) {
        const int sub = mosquitto_subscribe_v5(mosq, nullptr, pattern.c_str(), qos, 0, nullptr);
        spdlog::warn("mqtt: the broker lost the session of {}; subscribing to {} again: {}", st->options.client_id,
                     pattern, mosquitto_strerror(sub));
      }
    }
    if (rc == 0) st->ever_connected = true;
    st->connack = true;
    st->connect_rc = rc;
    st->is_connected = rc == 0;
    st->cv.notify_all();
  });
  mosquitto_disconnect_v5_callback_set(m, [](mosquitto*, void* obj, int, const mosquitto_property*) {
    auto* st = State::of(obj);
    std::lock_guard lock(st->mu);
    st->is_connected = false;
    st->cv.notify_all();
  });
  mosquitto_subscribe_v5_callback_set(
      m, [](mosquitto*, void* obj, int mid, int count, const int* granted, const mosquitto_property*) {
        auto* st = State::of(obj);
        std::lock_guard lock(st->mu);
        st->suback[mid] = count > 0 && granted[0] < 128;
        st->cv.notify_all();
      });
  mosquitto_publish_v5_callback_set(m, [](mosquitto*, void* obj, int mid, int reason, const mosquitto_property*) {
    auto* st = State::of(obj);
    std::lock_guard lock(st->mu);
    if (auto it = st->awaited.find(mid); it != st->awaited.end()) {
      it->second = reason;
    } else if (reason >= 128) {
      ++st->refused;
    } else {
      ++st->acked;
    }
    st->cv.notify_all();
  });
  mosquitto_message_v5_callback_set(
      m, [](mosquitto* mosq, void* obj, const mosquitto_message* msg, const mosquitto_property*) {
        auto* st = State::of(obj);
        MqttMessage message{msg->topic, std::string(static_cast<const char*>(msg->payload),
                                                    static_cast<std::size_t>(msg->payloadlen))};
        if (st->handler) {  // set once before CONNECT, never changed: no lock needed
          if (st->handler(message) == Delivery::Refused) {
            // The PUBACK is queued after this callback returns and written by this thread later:
            // with the socket shut it never leaves. The loop reconnects; the broker redelivers.
            ::shutdown(mosquitto_socket(mosq), SHUT_RDWR);
          } else {
            st->taken = true;
          }
          return;
        }
        std::lock_guard lock(st->mu);
        st->inbox.push_back(std::move(message));
        st->cv.notify_all();
      });
  return std::unique_ptr<MqttClient>(new MqttClient(std::move(state)));
}

std::expected<void, std::string> MqttClient::open(const std::string& host, int port, std::chrono::milliseconds timeout) {
  State* s = state_.get();
  mosquitto* m = s->mosq.get();
  mosquitto_property* props = nullptr;
  if (!s->options.clean_start && s->options.session_expiry_s > 0) {
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, s->options.session_expiry_s);
  }
  int rc = mosquitto_connect_bind_v5(m, host.c_str(), port, s->options.keepalive_s, nullptr, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) return std::unexpected("cannot reach MQTT broker at " + host + ":" +
                                                     std::to_string(port) + ": " + mosquitto_strerror(rc));
  if (s->options.before_acknowledging) {
    s->own_loop = std::jthread([s](std::stop_token stop) { s->drive(stop); });
  } else {
    if (mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) return std::unexpected(std::string("mosquitto_loop_start failed"));
    s->loop_started = true;
  }
  std::unique_lock lock(s->mu);
  if (!s->cv.wait_for(lock, timeout, [&] { return s->connack; })) {
    return std::unexpected(std::string("no CONNACK from MQTT broker"));
  }
  if (s->connect_rc != 0) {
    return std::unexpected(std::string("MQTT broker refused the connection: ") + mosquitto_reason_string(s->connect_rc));
  }
  return {};
}

std::expected<std::unique_ptr<MqttClient>, std::string> MqttClient::connect(const std::string& host, int port,
                                                                            const Options& options,
                                                                            std::chrono::milliseconds timeout) {
  auto client = create(options);
  if (!client) return client;
  if (auto ok = (*client)->open(host, port, timeout); !ok) return std::unexpected(ok.error());
  return client;
}

std::expected<void, std::string> MqttClient::subscribe(const std::string& pattern, int qos,
                                                       std::chrono::milliseconds timeout) {
  int mid = 0;
  int rc = mosquitto_subscribe_v5(state_->mosq.get(), &mid, pattern.c_str(), qos, 0, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return std::unexpected(std::string(mosquitto_strerror(rc)));
  std::unique_lock lock(state_->mu);
  if (!state_->cv.wait_for(lock, timeout, [&] { return state_->suback.contains(mid); })) {
    return std::unexpected("no SUBACK for " + pattern);
  }
  bool granted = state_->suback[mid];
  state_->suback.erase(mid);
  if (!granted) return std::unexpected("subscription to " + pattern + " refused by the broker");
  state_->subscriptions.emplace_back(pattern, qos);
  return {};
}

std::expected<int, std::string> MqttClient::publish_and_wait(const std::string& topic, std::string_view payload,
                                                             int qos, std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  int mid = 0;
  // Registered before the network thread can see the PUBACK, so the callback finds it.
  int rc = mosquitto_publish_v5(state_->mosq.get(), &mid, topic.c_str(), static_cast<int>(payload.size()),
                                payload.data(), qos, false, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return std::unexpected(std::string(mosquitto_strerror(rc)));
  if (qos == 0) return 0;
  state_->awaited.emplace(mid, -1);
  bool done = state_->cv.wait_for(lock, timeout, [&] { return state_->awaited[mid] >= 0; });
  int reason = state_->awaited[mid];
  state_->awaited.erase(mid);
  if (!done) return std::unexpected("no PUBACK for " + topic);
  return reason;
}

std::expected<void, std::string> MqttClient::publish(const std::string& topic, std::string_view payload, int qos) {
  std::lock_guard lock(state_->mu);
  int rc = mosquitto_publish_v5(state_->mosq.get(), nullptr, topic.c_str(), static_cast<int>(payload.size()),
                                payload.data(), qos, false, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return std::unexpected(std::string(mosquitto_strerror(rc)));
  if (qos > 0) ++state_->published;
  return {};
}

std::expected<void, std::string> MqttClient::publish_when_connected(const std::string& topic, std::string_view payload,
                                                                   int qos, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    auto sent = publish(topic, payload, qos);
    if (sent || std::chrono::steady_clock::now() >= deadline) return sent;
    std::unique_lock lock(state_->mu);
    state_->cv.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)),
                          [&] { return state_->is_connected; });
  }
}

bool MqttClient::wait_all_acked(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, timeout,
                             [&] { return state_->acked + state_->refused >= state_->published; });
}

std::uint64_t MqttClient::acked() const {
  std::lock_guard lock(state_->mu);
  return state_->acked;
}

std::uint64_t MqttClient::refused() const {
  std::lock_guard lock(state_->mu);
  return state_->refused;
}

std::optional<MqttMessage> MqttClient::next_message(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  if (!state_->cv.wait_for(lock, timeout, [&] { return !state_->inbox.empty(); })) return std::nullopt;
  MqttMessage m = std::move(state_->inbox.front());
  state_->inbox.pop_front();
  return m;
}

}  // namespace courtyard
