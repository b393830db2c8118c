#include "ingest/bridge.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/digest.h"
#include "common/event_ids.h"
#include "common/handles.h"
#include "common/random.h"
#include "common/text.h"
#include "ingest/admit.h"
#include "registry_view.h"
#include "schemas/seq_window.h"
#include "spool.h"
#include "spool_pump.h"

namespace courtyard::ingest {
namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr const char* kRegistryAppliedKey = "registry_applied";
std::string chain_key(const std::string& community) { return "chain/" + community; }
std::string requests_key(std::int32_t partition) { return "requests/" + std::to_string(partition); }

using Meta = std::vector<std::pair<std::string, std::string>>;

}  // namespace

struct Bridge::Impl {
  explicit Impl(BridgeConfig c) : config(std::move(c)) {}

  BridgeConfig config;
  std::unique_ptr<Spool> spool;
  std::unique_ptr<RegistryView> registry;
  KafkaPtr producer;
  std::unique_ptr<MqttClient> mqtt;           // telemetry in; error replies, commands and notices out
  std::unique_ptr<MqttClient> snapshot_mqtt;  // camera snapshots in (a session of its own)

  // Appends happen on the MQTT threads (telemetry, snapshots) and the loop thread (registrations): one lock keeps
  // spool order, event-id order and the order handed to the producer the same.
  std::mutex append_mu;
  EventIdClock ids{config.instance};
  std::int64_t registry_applied = 0;

  std::unique_ptr<SpoolPump> spool_pump;  // spool -> producer, in order, memory bounded
  std::atomic<bool> fatal{false};
  // The spool refused the last write (a full disk): devices' messages are handed back to the
  // broker unacknowledged until a write succeeds again.
  std::atomic<bool> spool_failing{false};

  std::atomic<std::uint64_t> accepted{0}, rejected{0}, delivered{0}, commands{0}, handed_back{0};
  // A camera image left the spool for Kafka since the last purge: its bytes must leave the disk too.
  std::atomic<bool> images_delivered{false};
  KafkaPtr command_consumer;

  // Hub -> device: commands of owned communities go to the device's cmd topic, or for "_staff"
  // to the community's staff alert topic. At least once: a command's offset is stored only after
  // its publish was accepted; one that could not be published is retried first next time.
  KafkaMessagePtr stalled_command;

  // A field of a command record: the record is outside input, whoever wrote it.
  static std::string text_of(const nlohmann::json& j, const char* field) {
    auto it = j.find(field);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  }
  static std::int64_t number_of(const nlohmann::json& j, const char* field) {
    auto it = j.find(field);
    return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
  }

  bool relay(const rd_kafka_message_t& m) {
    auto command = nlohmann::json::parse(std::string_view(static_cast<const char*>(m.payload), m.len), nullptr, false);
    if (!command.is_object()) command = nlohmann::json::object();
    const std::string community = text_of(command, "community"), device = text_of(command, "device");
    // A new instance reads the topic from its start, so nothing issued while it was joining is
    // missed; what is older than the age limit is history, not a command. A record that names no
    // valid community and device is skipped: retrying it would stall every command behind it.
    const bool fresh = wall_ms() - number_of(command, "issued_at") <= config.command_max_age.count();
    const bool addressed = schemas::valid_id(community) && schemas::valid_id(device);
    if (!addressed && fresh) spdlog::error("commands: record at {}@{} names no valid device; skipped", m.partition, m.offset);
    if (fresh && addressed && owns(CommunityId(community))) {
      const std::string unit = text_of(command, "unit");
      // A household's notice goes to that household's panels only, never to the whole community.
      std::string topic = device == "_staff"     ? "courtyard/v1/" + community + "/alerts"
                          : device == "_notices" ? "courtyard/v1/" + community + "/notices" +
                                                       (schemas::valid_id(unit) ? "/" + unit : "")
                                                 : schemas::topic_for(CommunityId(community), DeviceId(device), "cmd");
      const std::string command_id = text_of(command, "command_id");
      const std::int64_t expires_at = number_of(command, "expires_at");
      if (expires_at && wall_ms() >= expires_at) {
        // Too late to act on; the processors expire it on their own clock.
      } else if (command_id.empty()) {
        if (auto sent = mqtt->publish(topic, command.dump(), 1); !sent) {
          spdlog::warn("command to {} not sent yet: {}", topic, sent.error());
          return false;
        }
        ++commands;
      } else {
        // A tracked command: once the broker holds it for the device's session, say so in the log.
        auto sent = mqtt->publish_and_wait(topic, command.dump(), 1, std::chrono::seconds(5));
        if (!sent || *sent >= 0x80) {
          spdlog::warn("command {} to {} not sent yet: {}", command_id, topic,
                       sent ? "reason " + std::to_string(*sent) : sent.error());
          return false;
        }
        ++commands;
        schemas::Event delivered;
        delivered.device = DeviceId(device);
        delivered.community = CommunityId(community);
        delivered.body = schemas::CommandDelivered{command_id};
        if (!append_event(std::move(delivered))) return false;  // sent again later: at least once
      }
    }
    KafkaPartitionsPtr done(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(done.get(), rd_kafka_topic_name(m.rkt), m.partition)->offset = m.offset + 1;
    rd_kafka_offsets_store(command_consumer.get(), done.get());
    return true;
  }

  void relay_commands() {
    if (stalled_command) {
      if (!relay(*stalled_command)) return;
      stalled_command.reset();
    }
    for (int i = 0; i < 500; ++i) {
      KafkaMessagePtr m(rd_kafka_consumer_poll(command_consumer.get(), 0));
      if (!m) return;
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) spdlog::warn("commands: {}", rd_kafka_message_errstr(m.get()));
        continue;
      }
      if (!relay(*m)) {
        stalled_command = std::move(m);
        return;
      }
    }
  }

  // Hub -> log: the hub's events for a community (operator actions, registry changes, commands,
  // notices) arrive on the requests topic; ingest appends those of its communities, so it stays
  // the single writer of each community's stream. Where it stands per partition is kept in the
  // spool with each append: a restart neither loses nor repeats one.
  KafkaPtr requests_consumer;
  std::map<std::int32_t, bool> requests_resumed;  // partition -> started from the spool's offset
  KafkaMessagePtr stalled_request;                // the spool did not take it: first next time

  void start_requests() {
    auto consumer = make_consumer(config.kafka, {{"group.id", config.client_id + "-requests"},
                                                 {"enable.auto.commit", "false"},
                                                 {"enable.partition.eof", "false"}});
    if (!consumer) throw std::runtime_error("requests consumer: " + consumer.error());
    requests_consumer = std::move(*consumer);
    const rd_kafka_metadata_t* md = nullptr;
    if (auto err = rd_kafka_metadata(requests_consumer.get(), 1, nullptr, &md, 10000)) {
      throw std::runtime_error(std::string("requests metadata: ") + rd_kafka_err2str(err));
    }
    KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(8));
    for (int t = 0; t < md->topic_cnt; ++t) {
      if (config.kafka.requests_topic != md->topics[t].topic) continue;
      for (int i = 0; i < md->topics[t].partition_cnt; ++i) {
        const std::int32_t p = md->topics[t].partitions[i].id;
        auto stored = spool->meta(requests_key(p));
        requests_resumed[p] = stored.has_value();
        rd_kafka_topic_partition_list_add(parts.get(), config.kafka.requests_topic.c_str(), p)->offset =
            stored ? std::stoll(*stored) : RD_KAFKA_OFFSET_BEGINNING;
      }
    }
    rd_kafka_metadata_destroy(md);
    if (parts->cnt == 0) throw std::runtime_error("topic " + config.kafka.requests_topic + " does not exist");
    if (auto err = rd_kafka_assign(requests_consumer.get(), parts.get())) {
      throw std::runtime_error(std::string("requests assign: ") + rd_kafka_err2str(err));
    }
  }

  void append_requests() {
    for (int i = 0; i < 500; ++i) {
      KafkaMessagePtr m = stalled_request ? std::move(stalled_request)
                                          : KafkaMessagePtr(rd_kafka_consumer_poll(requests_consumer.get(), 0));
      if (!m) return;
      if (m->err) continue;
      auto event = schemas::decode(std::string_view(static_cast<const char*>(m->payload), m->len));
      if (!event || event->community.empty() || schemas::is_system_event(event->body) == false) {
        spdlog::error("request at {}@{} is not a Courtyard event of a community; skipped", m->partition, m->offset);
        continue;
      }
      if (!owns(event->community)) continue;
      // A new instance reads from the start; what is older than the age limit was another's to append.
      if (!requests_resumed[m->partition] && wall_ms() - event->device_time_ms > config.command_max_age.count()) continue;
      if (!append_event(std::move(*event), {{requests_key(m->partition), std::to_string(m->offset + 1)}})) {
        stalled_request = std::move(m);
        return;
      }
    }
  }

  // The log's clock: a tick to every partition, straight to the producer (a lost tick is only a
  // late timer; the next one follows).
  int partitions = 0;
  void tick() {
    if (fatal || !producer) return;
    if (partitions == 0) {
      const rd_kafka_metadata_t* md = nullptr;
      std::unique_ptr<rd_kafka_topic_t, CDeleter<rd_kafka_topic_destroy>> topic(
          rd_kafka_topic_new(producer.get(), config.kafka.events_topic.c_str(), nullptr));
      if (rd_kafka_metadata(producer.get(), 0, topic.get(), &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err) partitions = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
      }
      if (partitions == 0) {
        spdlog::warn("ticker: {} has no partitions yet", config.kafka.events_topic);
        return;
      }
    }
    if (!begin()) return;  // a commit or abort is unfinished: this second goes without a tick
    for (std::int32_t p = 0; p < partitions; ++p) {
      schemas::Event tick;
      tick.device = DeviceId(config.client_id);
      tick.body = schemas::Tick{p};
      {
        std::lock_guard lock(append_mu);  // the same id clock as every event's
        auto stamp = ids.next();
        tick.event_id = stamp.id;
        tick.ingest_time_ms = tick.device_time_ms = stamp.ms;
      }
      tick.chain_link = schemas::chain_link(config.chain_key, std::string(schemas::kTickLink), tick);
      const std::string value = schemas::encode(tick);
      auto err = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(config.kafka.events_topic.c_str()),
                                   RD_KAFKA_V_PARTITION(p), RD_KAFKA_V_KEY("tick", 4),
                                   RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&kTickMarker),
                                   RD_KAFKA_V_END);
      if (err) spdlog::warn("tick to partition {}: {}", p, rd_kafka_err2str(err));
    }
  }

  bool owns(const CommunityId& community) const {
    if (config.communities.empty()) return true;
    for (const auto& c : config.communities) {
      if (c == community.str()) return true;
    }
    return false;
  }

  // Each owned community's chain head: (seq, link) of its last appended event. Kept in the spool
  // next to the records, in the same atomic write, so a restart continues the chain exactly.
  std::map<std::string, std::pair<std::uint64_t, std::string>> chain_heads;

  struct Head {
    std::string community;
    std::uint64_t seq = 0;
    std::string link;
    std::pair<std::string, std::string> meta() const { return {chain_key(community), std::to_string(seq) + " " + link}; }
  };

  // Gives the event its id, ingest time and chain link; returns the community's new head, which
  // becomes the head (advance()) only once the spool holds the event: a write the disk refused
  // leaves the chain where it was.
  Head stamp(schemas::Event& e) {
    auto stamp = ids.next();
    e.event_id = stamp.id;
    e.ingest_time_ms = stamp.ms;
    const std::string community = e.community.str();
    auto head = chain_heads.find(community);
    if (head == chain_heads.end()) {
      std::pair<std::uint64_t, std::string> stored{0, ""};
      if (auto raw = spool->meta(chain_key(community))) {
        auto space = raw->find(' ');
        stored = {std::stoull(raw->substr(0, space)), space == std::string::npos ? "" : raw->substr(space + 1)};
      }
      head = chain_heads.emplace(community, stored).first;
    }
    e.chain_seq = head->second.first + 1;
    e.chain_link = schemas::chain_link(config.chain_key, head->second.second, e);
    return {community, e.chain_seq, e.chain_link};
  }
  void advance(const Head& head) { chain_heads[head.community] = {head.seq, head.link}; }

  bool append(SpoolRecord record, const Meta& meta = {}) {
    std::vector<SpoolRecord> one;
    one.push_back(std::move(record));
    return append(std::move(one), meta);
  }

  // Records that must survive together (a snapshot's image and its event) go in one spool write.
  // False when the disk did not take them: nothing of them was kept, and whoever handed them over
  // must keep them (a device's message goes back to the broker unacknowledged).
  bool append(std::vector<SpoolRecord> records, const Meta& meta) {
    auto seq = spool->append(std::span<const SpoolRecord>(records), meta);
    if (!seq) {
      if (!spool_failing.exchange(true)) {
        spdlog::critical("{}; acknowledging nothing until the spool takes writes again", seq.error());
      }
      return false;
    }
    if (spool_failing.exchange(false)) spdlog::warn("the spool takes writes again; acknowledging devices again");
    spool_pump->appended(*seq, std::move(records));
    return true;
  }

  // Which (boot, seq) each device's messages in the spool have reached (schemas/seq_window.h),
  // kept in the spool with each event (meta "seq/<device>", in the same write), so a message the
  // broker delivers again after a crash (its acknowledgement was lost with the process) is
  // recognised and acknowledged without a second event in the log. One window per device over
  // all its channels: a camera's snapshots and telemetry share one seq counter, and the window's
  // 1,024 seqs span the drift between the two MQTT sessions that carry them (after a backlog one
  // can be a hundred seqs ahead of the other). Under append_mu.
  std::unordered_map<DeviceId, schemas::SeqWindow> windows;
  std::atomic<std::uint64_t> repeats{0};

  // The device's window after this event, or nullopt for a message the spool holds already.
  std::optional<std::pair<std::string, std::string>> admit_once(const schemas::Event& e, schemas::SeqWindow& after) {
    const std::string key = "seq/" + e.device.str();
    auto it = windows.find(e.device);
    if (it == windows.end()) {
      schemas::SeqWindow stored;
      if (auto raw = spool->meta(key)) stored = schemas::seq_window_from_text(*raw).value_or(stored);
      it = windows.emplace(e.device, stored).first;
    }
    after = it->second;
    if (schemas::admit(after, e.boot, e.seq) == schemas::Admission::Duplicate) return std::nullopt;
    return std::pair{key, schemas::to_text(after)};
  }

  // The image goes to the snapshots topic with the event; the log gets the event without it.
  bool append_snapshot(schemas::Event event) {
    auto& snapshot = std::get<schemas::CameraSnapshot>(event.body);
    auto info = schemas::jpeg_info(snapshot.jpeg);  // admitted, so a JPEG
    snapshot.image_sha256 = sha256_hex(snapshot.jpeg);
    snapshot.image_bytes = static_cast<std::uint32_t>(snapshot.jpeg.size());
    snapshot.width = static_cast<std::uint16_t>(info ? info->width : 0);
    snapshot.height = static_cast<std::uint16_t>(info ? info->height : 0);
    std::string jpeg = std::move(snapshot.jpeg);
    snapshot.jpeg.clear();
    return append_once(std::move(event), [&](schemas::Event& stamped) {
      std::string logged = schemas::encode(stamped);
      std::get<schemas::CameraSnapshot>(stamped.body).jpeg = std::move(jpeg);
      std::vector<SpoolRecord> records;
      records.push_back({config.kafka.snapshots_topic, stamped.device.str(), schemas::encode(stamped), {}});
      records.push_back({config.kafka.events_topic, stamped.community.str(), std::move(logged), {}});
      return records;
    });
  }

  // Appends an event of ingest's own or of the hub's (a registration, a request, a delivery).
  bool append_event(schemas::Event event, Meta meta = {}) {
    std::lock_guard lock(append_mu);
    const Head head = stamp(event);
    meta.push_back(head.meta());
    if (!append(SpoolRecord{config.kafka.events_topic, event.community.str(), schemas::encode(event), {}}, meta)) {
      return false;
    }
    advance(head);
    return true;
  }

  // Appends a device's event, unless the spool holds that message already (then true as well:
  // the device is acknowledged again, the log gets it once).
  bool append_device_event(schemas::Event event) {
    return append_once(std::move(event), [&](const schemas::Event& stamped) {
      return std::vector<SpoolRecord>{{config.kafka.events_topic, stamped.community.str(), schemas::encode(stamped), {}}};
    });
  }

  // A device's message into the spool once: a repeat of one the spool holds (the device's
  // window says so) is acknowledged and not appended; otherwise the event is stamped, `records`
  // makes what the spool keeps of it, and the window moves on in the same write.
  template <class Records>
  bool append_once(schemas::Event event, Records records) {
    std::lock_guard lock(append_mu);
    schemas::SeqWindow window;
    auto seen = admit_once(event, window);
    if (!seen) {
      ++repeats;
      return true;
    }
    const Head head = stamp(event);
    if (!append(records(event), {head.meta(), *seen})) return false;
    advance(head);
    windows[event.device] = window;
    return true;
  }

  // Registry records read and not yet applied, in the order read. Main thread only: the bridge's
  // loop is the registry's one reader and applier, so registrations are applied in log order.
  std::deque<RegistryRecord> unapplied;

  // What admission relies on: devices whose registration is in the spool (or, for another
  // instance's community, was read), and the registry offset they are settled to. Under known_mu.
  std::mutex known_mu;
  std::condition_variable known_cv;
  std::unordered_map<DeviceId, schemas::Registration> known;
  std::int64_t settled_to = 0;

  // Appends registrations in order; one the spool does not take waits, with those after it, for
  // the next round. Main thread only (and start()).
  void apply_registrations(std::vector<RegistryRecord> records) {
    for (auto& r : records) unapplied.push_back(std::move(r));
    while (!unapplied.empty()) {
      const RegistryRecord& r = unapplied.front();
      if (r.registration && r.offset >= registry_applied && owns(r.registration->community)) {
        if (!append_event(schemas::registered_event(*r.registration),
                          {{std::string(kRegistryAppliedKey), std::to_string(r.offset + 1)}})) {
          return;
        }
        spdlog::info("registered {} ({}) in {}", r.device.str(), schemas::to_string(r.registration->kind),
                     r.registration->community.str());
      }
      {
        std::lock_guard lock(known_mu);
        if (r.registration) known[r.device] = *r.registration;
        else known.erase(r.device);
      }
      registry_applied = std::max(registry_applied, r.offset + 1);
      unapplied.pop_front();
    }
    std::lock_guard lock(known_mu);
    settled_to = std::max(settled_to, registry->read_offset());
    known_cv.notify_all();
  }

  std::optional<schemas::Registration> known_device(const DeviceId& device) {
    std::lock_guard lock(known_mu);
    auto it = known.find(device);
    if (it == known.end()) return std::nullopt;
    return it->second;
  }

  // Whether admission can answer for a device now. A device gets its broker credentials only after
  // its registration is written, so once the registry is applied up to where it ends at this
  // moment, a device not in it does not exist. When that cannot be settled in time (Kafka slow or
  // away, or the spool refusing the registration), false: the message goes back to the broker
  // unacknowledged; a genuine device is never dead-lettered as unknown for want of a read.
  bool settled(const DeviceId& device) {
    if (known_device(device)) return true;
    auto high = registry->high_watermark(config.registry_wait);
    if (!high) {
      spdlog::warn("{}; message of {} handed back", high.error(), device.str());
      return false;
    }
    std::unique_lock lock(known_mu);
    if (known_cv.wait_for(lock, config.registry_wait,
                          [&] { return settled_to >= *high || known.contains(device); })) {
      return true;
    }
    spdlog::warn("registry not applied up to offset {} within {} ms; message of {} handed back", *high,
                 config.registry_wait.count(), device.str());
    return false;
  }

  Delivery reject(const MqttMessage& m, const schemas::Rejection& why) {
    auto topic = schemas::parse_topic(m.topic);
    auto seq = schemas::best_effort_seq(m.payload);
    // The dead-letter topic is kept for ever: a camera's image (faces, plates) is not.
    const bool image = topic && topic->channel == "snapshot";
    // Keyed by device, so a device's refusals are in one partition; those of a topic that names no
    // device all share one key (and so one partition): they share one record, rejections/_unknown,
    // which one owner must write (decision 0024). The topic is in the source_topic header.
    SpoolRecord dead{config.kafka.deadletter_topic, topic ? topic->device.str() : "_unknown", image ? "" : m.payload, {}};
    // Headers are text for every reader (the hub folds them, auditors export them): whatever a
    // device sent appears in them only as printable text.
    const std::string detail = printable(why.detail, 512);
    dead.headers = {{"reason", std::string(schemas::to_string(why.code))},
                    {"detail", detail},
                    {"source_topic", printable(m.topic, 256)},
                    {"received_at", std::to_string(wall_ms())}};
    if (topic) {
      dead.headers.emplace_back("community", topic->community.str());
      dead.headers.emplace_back("device", topic->device.str());
    }
    if (seq) dead.headers.emplace_back("seq", std::to_string(*seq));
    if (image) {
      dead.headers.emplace_back("payload_omitted", "camera image");
      dead.headers.emplace_back("payload_bytes", std::to_string(m.payload.size()));
      dead.headers.emplace_back("payload_sha256", sha256_hex(m.payload));
    }
    dead.headers.emplace_back("auth", schemas::dead_letter_mac(config.chain_key, dead.value, dead.headers));
    if (!append(std::move(dead))) return Delivery::Refused;
    ++rejected;
    if (topic) {
      nlohmann::json reply{{"seq", seq ? nlohmann::json(*seq) : nlohmann::json(nullptr)},
                           {"reason", schemas::to_string(why.code)},
                           {"detail", detail}};
      auto sent = mqtt->publish(schemas::topic_for(topic->community, topic->device, "errors"),
                                reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 1);
      if (!sent) spdlog::warn("error reply to {} not sent: {}", topic->device.str(), sent.error());
    }
    return Delivery::Taken;
  }

  // A device's message is acknowledged (Taken) only once the spool holds what became of it: the
  // event, or its dead letter. What the spool refuses goes back to the broker (Refused).
  Delivery on_message(const MqttMessage& m) {
    Delivery outcome = Delivery::Taken;
    try {
      if (auto topic = schemas::parse_topic(m.topic); topic && !settled(topic->device)) {
        ++handed_back;
        return Delivery::Refused;
      }
      auto event = admit(m.topic, m.payload, [this](const DeviceId& d) { return known_device(d); }, config.limits);
      if (!event) {
        outcome = reject(m, event.error());
      } else if (!owns(event->community)) {
        return Delivery::Taken;  // another instance's community; our subscriptions should not deliver it
      } else {
        const bool kept = std::holds_alternative<schemas::CameraSnapshot>(event->body)
                              ? append_snapshot(std::move(*event))
                              : append_device_event(std::move(*event));
        if (kept) ++accepted;
        outcome = kept ? Delivery::Taken : Delivery::Refused;
      }
    } catch (const std::exception& e) {
      outcome = reject(m, schemas::Rejection{schemas::Rejection::Code::Malformed, std::string("internal error: ") + e.what()});
    }
    if (outcome == Delivery::Refused) ++handed_back;
    return outcome;  // the loop produces it: the transactional producer is driven from one thread
  }

  // Hands spooled records to the producer, inside the open transaction (one is begun for the
  // first). Loop thread only. Nothing is produced while a commit or an abort is unfinished.
  // Only what is on the disk goes to Kafka: a delivery mark may never claim a sequence a power
  // cut could give back to the spool (the next run would skip the new record that reuses it).
  void pump() {
    if (fatal || !producer || (txn != Txn::Idle && txn != Txn::Open)) return;
    if (spool->synced_end() < spool->next_seq()) {
      if (auto ok = spool->sync(); !ok) spdlog::warn("{}", ok.error());
    }
    const std::uint64_t on_disk = spool->synced_end();
    spool_pump->pump([this, on_disk](std::uint64_t seq, const SpoolRecord& r) {
      if (seq >= on_disk) return false;
      if (!begin(seq)) return false;
      rd_kafka_headers_t* headers = nullptr;
      if (!r.headers.empty()) {
        headers = rd_kafka_headers_new(r.headers.size());
        for (const auto& [k, v] : r.headers) {
          rd_kafka_header_add(headers, k.data(), static_cast<ssize_t>(k.size()), v.data(), static_cast<ssize_t>(v.size()));
        }
      }
      auto err = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(r.topic.c_str()), RD_KAFKA_V_KEY(r.key.data(), r.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(seq))),
          RD_KAFKA_V_END);
      if (err) {
        if (headers) rd_kafka_headers_destroy(headers);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          spdlog::critical("produce to {} failed: {}", r.topic, rd_kafka_err2str(err));
          fatal = true;
        }
        return false;
      }
      return true;
    });
  }

  static inline char kTickMarker = 0;  // the opaque of ticks: not a spooled record
  static inline char kMarkMarker = 0;  // the opaque of delivery marks

  // Exactly once into Kafka (docs/decisions/0014): spooled records are produced in transactions
  // of the producer whose transactional id is this instance's client id. Each transaction also
  // carries the instance's delivery mark (the spool sequence it reaches) to the progress topic,
  // so the mark is in Kafka exactly when the records are. Only after the commit does the spool
  // forget them; a restart fences the previous producer (init_transactions), reads the mark and
  // skips what Kafka already holds. Loop thread only.
  enum class Txn { Idle, Open, Committing, Aborting };
  Txn txn = Txn::Idle;
  std::uint64_t txn_first = 0;   // the first spool sequence the open transaction may hold
  std::uint64_t txn_end = 0;     // its end, fixed when its mark is produced
  bool txn_marked = false;
  std::chrono::steady_clock::time_point txn_began;
  std::string spool_id;          // the spool's identity: a mark of another spool means nothing here
  bool txn_trouble = false;      // the last commit or abort did not finish (logged once)

  // Opens a transaction if none is; `first`: the spool sequence about to be produced (inside the
  // pump, whose lock is held), else the pump's next.
  bool begin(std::optional<std::uint64_t> first = std::nullopt) {
    if (txn == Txn::Open) return true;
    if (txn != Txn::Idle) return false;
    if (KafkaErrorPtr e{rd_kafka_begin_transaction(producer.get())}) {
      spdlog::critical("begin transaction: {}", rd_kafka_error_string(e.get()));
      fatal = true;
      return false;
    }
    txn = Txn::Open;
    txn_first = first ? *first : spool_pump->next_seq();
    txn_marked = false;
    txn_began = std::chrono::steady_clock::now();
    return true;
  }

  // What a failed commit or abort means: try again (the broker is away), abort (a record was not
  // kept), or stop (another instance took over this transactional id: two ingests with one id).
  void failed(const char* what, KafkaErrorPtr e) {
    if (rd_kafka_error_is_fatal(e.get())) {
      // The producer is done for. Fenced: after an outage longer than the transaction timeout the
      // broker aborted our transaction and moved the id's epoch on, or another ingest runs with
      // our id. Or a broker killed mid-transaction came back without it and refuses to end it
      // (INVALID_TXN_STATE, seen at 2,000 events/s). A new producer tells these apart: its
      // init_transactions fences whoever else holds the id, and start_afresh() stops ingest when
      // that keeps happening (another ingest) or the new producer cannot start (no access).
      spdlog::warn("{}: {}; starting transactions afresh", what, rd_kafka_error_string(e.get()));
      fenced = true;
    } else if (rd_kafka_error_txn_requires_abort(e.get())) {
      spdlog::warn("{}: {}; aborting, its records go again", what, rd_kafka_error_string(e.get()));
      txn = Txn::Aborting;
    } else if (!txn_trouble) {
      txn_trouble = true;
      spdlog::warn("{}: {}; retrying", what, rd_kafka_error_string(e.get()));
    }
  }

  // Commits the open transaction with its mark. A commit that does not finish within `timeout`
  // goes on in the background and is called again from the next round (state Committing).
  void commit(std::chrono::milliseconds timeout) {
    if (txn == Txn::Open && !txn_marked) {
      txn_end = spool_pump->next_seq();
      const std::string mark = spool_id + " " + std::to_string(txn_end);
      auto err = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(config.kafka.progress_topic.c_str()),
                                   RD_KAFKA_V_KEY(config.client_id.data(), config.client_id.size()),
                                   RD_KAFKA_V_VALUE(const_cast<char*>(mark.data()), mark.size()),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&kMarkMarker), RD_KAFKA_V_END);
      if (err) return;  // the producer's queue is full: the next round
      txn_marked = true;
      txn = Txn::Committing;
    }
    if (txn != Txn::Committing) return;
    if (KafkaErrorPtr e{rd_kafka_commit_transaction(producer.get(), static_cast<int>(timeout.count()))}) {
      return failed("commit", std::move(e));
    }
    if (txn_trouble) spdlog::info("transactions commit again");
    txn_trouble = false;
    txn = Txn::Idle;
    spool_pump->committed();
    delivered += txn_end - txn_first;
    if (txn_end > txn_first) forget(txn_first, txn_end);
  }

  void abort(std::chrono::milliseconds timeout) {
    if (KafkaErrorPtr e{rd_kafka_abort_transaction(producer.get(), static_cast<int>(timeout.count()))}) {
      return failed("abort", std::move(e));
    }
    txn_trouble = false;
    txn = Txn::Idle;
    spool_pump->rewind(txn_first);
  }

  // A fresh transactional producer after a fencing: what the old one handed over and the mark
  // does not cover goes again. Bounded: a second ingest running with our id would fence us back
  // in turn; the fourth fencing within ten minutes stops this one, its spool kept.
  bool fenced = false;
  std::deque<std::chrono::steady_clock::time_point> refreshes;
  void start_afresh() {
    fenced = false;
    const auto now = std::chrono::steady_clock::now();
    refreshes.push_back(now);
    while (now - refreshes.front() > std::chrono::minutes(10)) refreshes.pop_front();
    if (refreshes.size() > 3) {
      spdlog::critical("fenced {} times in ten minutes: is another ingest running as {}? stopping", refreshes.size(),
                       config.client_id);
      fatal = true;
      return;
    }
    rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
    rd_kafka_poll(producer.get(), 0);
    producer.reset();
    txn = Txn::Idle;
    txn_trouble = false;
    std::uint64_t resume = 0;
    try {
      producer = transactional_producer();
      resume = recover();  // past what the mark covers, even where the spool could not forget it
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      fatal = true;
      return;
    }
    spool_pump->rewind(resume);
    spdlog::info("transactions started afresh; {} spooled records go again", spool->next_seq() - spool->first_seq());
  }

  // One round of the transaction: commit what is open once it is old enough (or full), finish an
  // unfinished commit or abort.
  void transact(std::chrono::milliseconds timeout) {
    if (fenced) return start_afresh();
    if (txn == Txn::Open && (std::chrono::steady_clock::now() - txn_began >= config.commit_interval ||
                             spool_pump->in_flight() >= config.max_in_flight)) {
      commit(timeout);
    } else if (txn == Txn::Committing) {
      commit(timeout);
    }
    if (txn == Txn::Aborting) abort(timeout);
  }

  // Commits (or aborts) what is open, for at most `within`: a stop.
  void finish(std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (!fatal && !fenced && txn != Txn::Idle && std::chrono::steady_clock::now() < deadline) {
      if (txn == Txn::Aborting) abort(std::chrono::seconds(1));
      else commit(std::chrono::seconds(1));
      rd_kafka_poll(producer.get(), 0);
    }
  }

  // Committed records the spool has yet to forget (it refused the removal: a full disk). Removed
  // once it takes writes; a restart in between skips them by the mark.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> unremoved;
  void forget(std::uint64_t first, std::uint64_t end) {
    if (auto ok = spool->remove(first, end); !ok) {
      spdlog::error("{} (committed records {}..{} stay spooled; removed again later)", ok.error(), first, end);
      unremoved.emplace_back(first, end);
    }
  }
  void remove_delivered() {
    std::erase_if(unremoved, [this](const auto& r) { return spool->remove(r.first, r.second).has_value(); });
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (m->_private == &kTickMarker) {
      if (m->err) spdlog::warn("a tick was not appended: {}", rd_kafka_err2str(m->err));
      return;
    }
    if (!m->err) {
      if (self->config.kafka.snapshots_topic == rd_kafka_topic_name(m->rkt)) self->images_delivered = true;
      return;
    }
    // A record of an aborted or timed-out transaction goes again with the transaction's others.
    // Anything else is the broker refusing the record itself: producing it again would fail
    // again, so stop with it kept in the spool for whoever fixes the cause.
    switch (m->err) {
      case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
      case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
      case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
      case RD_KAFKA_RESP_ERR__TIMED_OUT:
      case RD_KAFKA_RESP_ERR__TRANSPORT:
      case RD_KAFKA_RESP_ERR__FENCED:
      case RD_KAFKA_RESP_ERR__STATE:
      case RD_KAFKA_RESP_ERR__FATAL:
      case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
      case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
      case RD_KAFKA_RESP_ERR_INVALID_TXN_STATE:
        return;  // the transaction's own error: commit or abort says what to do (start_afresh)
      default:
        if (m->_private == &kMarkMarker) return;  // the commit fails with it; it goes again
        spdlog::critical("Kafka refused spooled record {}: {}",
                         static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(m->_private)), rd_kafka_err2str(m->err));
        self->fatal = true;
    }
  }

  // Fences whatever producer a previous run left behind (its unfinished transaction is aborted),
  // then reads this instance's mark: spooled records before it are in Kafka already (committed
  // just before a crash took the spool's removal with it) and are forgotten, not produced again.
  // Returns the sequence the pump resumes at (what Kafka does not hold yet).
  std::uint64_t recover() {
    if (KafkaErrorPtr e{rd_kafka_init_transactions(producer.get(), 60000)}) {
      throw std::runtime_error(std::string("kafka transactions: ") + rd_kafka_error_string(e.get()));
    }
    if (auto id = spool->meta("spool_id")) {
      spool_id = *id;
    } else {
      spool_id = random_token(12);
      if (auto ok = spool->set_meta({{"spool_id", spool_id}}); !ok) throw std::runtime_error(ok.error());
    }
    std::optional<std::uint64_t> mark;
    auto read = read_to_end(
        config.kafka, config.kafka.progress_topic,
        [&](const rd_kafka_message_t& m) {
          if (!m.key || std::string_view(static_cast<const char*>(m.key), m.key_len) != config.client_id) return;
          const std::string value(static_cast<const char*>(m.payload), m.len);
          const auto space = value.find(' ');
          if (space == std::string::npos || value.substr(0, space) != spool_id) {
            mark.reset();  // another spool's (this instance's disk was replaced): says nothing of ours
            return;
          }
          mark = std::strtoull(value.c_str() + space + 1, nullptr, 10);
        },
        std::chrono::seconds(60), config.client_id + "-registry");
    if (!read) throw std::runtime_error("delivery marks: " + read.error());
    const std::uint64_t first = spool->first_seq();
    if (mark && *mark > first) {
      const std::uint64_t end = std::min(*mark, spool->next_seq());
      spdlog::info("{} spooled records are in Kafka already (committed before the last stop); forgetting them", end - first);
      forget(first, end);
      spool_pump->start_at(end);
      return end;
    }
    return first;
  }

  // Transactional (decision 14): its records become visible to readers (read_committed) with
  // the commit; a record of an aborted transaction never does. A record waits at most the
  // transaction's timeout, then the transaction is aborted and produced again. The timeout is
  // also how long a transaction left open by an ingest that died and does not come back holds
  // every reader of the partitions it touched (ticks touch all): short, so they wait seconds.
  KafkaPtr transactional_producer() {
    auto p = make_producer(config.kafka,
                           {{"transactional.id", config.client_id},
                            {"transaction.timeout.ms", "10000"},
                            {"acks", "all"},
                            {"linger.ms", std::to_string(config.linger.count())},
                            {"compression.type", "lz4"},
                            {"client.id", config.client_id}},
                           &Impl::on_delivery, this);
    if (!p) throw std::runtime_error("kafka producer: " + p.error());
    return std::move(*p);
  }

  void start() {
    if (config.chain_key.size() < 16) throw std::runtime_error("ingest needs its chain key (ingest.chain_key_file)");
    auto retention = snapshot_topic_configs(config.snapshot_retention);
    if (!retention) throw std::runtime_error(retention.error());
    if (auto ok = ensure_topic(config.kafka, config.kafka.snapshots_topic, 3, *retention); !ok) {
      throw std::runtime_error(ok.error());
    }
    auto s = Spool::open(config.spool_dir);
    if (!s) throw std::runtime_error(s.error());
    spool = std::move(*s);
    if (auto applied = spool->meta(kRegistryAppliedKey)) registry_applied = std::stoll(*applied);

    producer = transactional_producer();

    // Whatever a previous run accepted but Kafka never confirmed goes first, in order, read from
    // the spool as its turn comes (a day of backlog costs disk, not memory).
    spool_pump = std::make_unique<SpoolPump>(*spool, SpoolPumpLimits{.max_in_flight = config.max_in_flight});
    recover();
    if (auto backlog = spool->next_seq() - spool->first_seq()) {
      spdlog::info("re-producing {} spooled records from a previous run", backlog);
    }

    auto r = RegistryView::open(config.kafka, config.client_id);
    if (!r) throw std::runtime_error("registry: " + r.error());
    registry = std::move(*r);
    auto records = registry->catch_up(std::chrono::seconds(30));
    if (!records) throw std::runtime_error("registry: " + records.error());
    apply_registrations(std::move(*records));
    spdlog::info("registry: {} devices", known.size());

    MqttClient::Options options;
    options.client_id = config.client_id;
    options.username = config.mqtt.username;
    options.password = config.mqtt_password;
    options.clean_start = false;           // the broker queues QoS 1 messages while we are away
    options.session_expiry_s = 0xFFFFFFFF;  // and never forgets the session
    options.keepalive_s = config.mqtt.keepalive_s;
    options.handler = [this](const MqttMessage& m) { return on_message(m); };
    if (config.spool_sync) {
      // Group commit: a device is acknowledged once its record is on the disk; one fsync covers
      // every message the socket held.
      options.before_acknowledging = [this] {
        auto ok = spool->sync();
        if (!ok && !spool_failing.exchange(true)) {
          spdlog::critical("{}; acknowledging nothing until the spool takes writes again", ok.error());
        }
        return ok.has_value();
      };
    }
    auto client = MqttClient::create(options);
    if (!client) throw std::runtime_error("mqtt: " + client.error());
    mqtt = std::move(*client);  // before open(): the handler replies through it from the first message
    if (auto ok = mqtt->open(config.mqtt.host, config.mqtt.port, std::chrono::seconds(10)); !ok) {
      throw std::runtime_error("mqtt: " + ok.error());
    }
    // Camera images arrive on a session and thread of their own, so a 100 KB snapshot being
    // decoded and spooled never holds up the telemetry behind it.
    MqttClient::Options snapshot_options = options;
    snapshot_options.client_id = config.client_id + "-snapshots";
    auto images = MqttClient::create(snapshot_options);
    if (!images) throw std::runtime_error("mqtt: " + images.error());
    snapshot_mqtt = std::move(*images);
    if (auto ok = snapshot_mqtt->open(config.mqtt.host, config.mqtt.port, std::chrono::seconds(10)); !ok) {
      throw std::runtime_error("mqtt: " + ok.error());
    }
    std::vector<std::string> patterns;
    for (const char* channel : {"telemetry", "snapshot"}) {
      std::vector<std::string> of_channel;
      if (config.communities.empty()) of_channel.push_back(std::string("courtyard/v1/+/+/") + channel);
      for (const auto& c : config.communities) of_channel.push_back("courtyard/v1/" + c + "/+/" + channel);
      auto& client = std::string_view(channel) == "snapshot" ? *snapshot_mqtt : *mqtt;
      for (const auto& pattern : of_channel) {
        if (auto ok = client.subscribe(pattern, 1, std::chrono::seconds(10)); !ok) {
          throw std::runtime_error("mqtt: " + ok.error());
        }
        patterns.push_back(pattern);
      }
    }
    auto commands_consumer = make_consumer(config.kafka, {{"group.id", config.client_id + "-commands"},
                                                         {"enable.auto.offset.store", "false"},
                                                         {"auto.offset.reset", "earliest"},
                                                         {"partition.assignment.strategy", "cooperative-sticky"}});
    if (!commands_consumer) throw std::runtime_error("commands consumer: " + commands_consumer.error());
    command_consumer = std::move(*commands_consumer);
    KafkaPartitionsPtr topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), config.kafka.commands_topic.c_str(), RD_KAFKA_PARTITION_UA);
    if (auto err = rd_kafka_subscribe(command_consumer.get(), topics.get())) {
      throw std::runtime_error(std::string("commands subscribe: ") + rd_kafka_err2str(err));
    }
    start_requests();
    spdlog::info("ingest {} listening on {} pattern(s), producing to {}", config.client_id, patterns.size(),
                 config.kafka.events_topic);
  }
};

std::expected<KafkaProperties, std::string> snapshot_topic_configs(std::chrono::minutes retention) {
  if (retention < std::chrono::minutes(10)) {
    return std::unexpected("snapshot retention must be at least 10 minutes, not " + std::to_string(retention.count()));
  }
  constexpr std::int64_t kCleanerSlackMs = 5 * 60'000 + 60'000;  // log.retention.check.interval.ms + file.delete.delay.ms
  const std::int64_t total_ms = std::chrono::duration_cast<std::chrono::milliseconds>(retention).count();
  const std::int64_t segment_ms = total_ms / 24;
  return KafkaProperties{{"cleanup.policy", "delete"},
                         {"retention.ms", std::to_string(total_ms - segment_ms - kCleanerSlackMs)},
                         {"segment.ms", std::to_string(segment_ms)},
                         {"file.delete.delay.ms", "60000"},
                         {"max.message.bytes", std::to_string(2 << 20)}};
}

Bridge::Bridge(BridgeConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Bridge::~Bridge() = default;

void Bridge::run(std::stop_token stop) {
  impl_->start();
  auto last_report = std::chrono::steady_clock::now(), last_purge = last_report;
  auto next_tick = std::chrono::steady_clock::now();
  while (!stop.stop_requested() && !impl_->fatal) {
    rd_kafka_poll(impl_->producer.get(), 5);
    if (impl_->config.tick_interval.count() > 0 && std::chrono::steady_clock::now() >= next_tick) {
      next_tick += impl_->config.tick_interval;
      impl_->tick();
    }
    impl_->apply_registrations(impl_->registry->poll());
    if (!impl_->unremoved.empty()) impl_->remove_delivered();
    impl_->pump();
    impl_->relay_commands();
    impl_->append_requests();
    impl_->pump();
    impl_->transact(std::chrono::milliseconds(500));
    if (auto now = std::chrono::steady_clock::now(); now - last_purge > std::chrono::seconds(60) && impl_->images_delivered) {
      last_purge = now;
      impl_->images_delivered = false;
      if (auto ok = impl_->spool->purge(); !ok) spdlog::warn("{}", ok.error());
    }
    if (auto now = std::chrono::steady_clock::now(); now - last_report > std::chrono::seconds(10)) {
      last_report = now;
      auto s = stats();
      spdlog::info("ingest: accepted {} rejected {} delivered {} spooled {} commands relayed {} handed back {} repeats {}",
                   s.accepted, s.rejected, s.delivered, s.spooled, impl_->commands.load(), s.handed_back, s.repeats);
    }
  }
  rd_kafka_consumer_close(impl_->command_consumer.get());
  rd_kafka_consumer_close(impl_->requests_consumer.get());
  // No new messages while we drain. Closed before they are destroyed: a handler still running
  // (snapshots reply through the telemetry client) finds both clients there.
  impl_->snapshot_mqtt->close();
  impl_->mqtt->close();
  impl_->pump();
  impl_->finish(std::chrono::seconds(10));
  if (impl_->fatal) throw std::runtime_error("ingest stopped after a fatal error; spooled records are kept");
  spdlog::info("ingest stopped; {} records left in the spool", stats().spooled);
}

BridgeStats Bridge::stats() const {
  BridgeStats s;
  s.accepted = impl_->accepted;
  s.rejected = impl_->rejected;
  s.delivered = impl_->delivered;
  s.handed_back = impl_->handed_back;
  s.repeats = impl_->repeats;
  if (impl_->spool) {
    // The first before the end: both move while this reads them (appends on the MQTT threads,
    // removals after each commit), and read the other way round the end could be behind.
    const auto first = impl_->spool->first_seq();
    const auto end = impl_->spool->next_seq();
    s.spooled = end > first ? end - first : 0;
  }
  return s;
}

}  // namespace courtyard::ingest
