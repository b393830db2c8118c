#include "processors/vision_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "common/handles.h"
#include "common/rocksdb_log.h"
#include "schemas/registry.h"

namespace courtyard::processors {
namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Event ids start with their ingest time in milliseconds (common/event_ids.h), so big-endian ids
// sort by time and one range delete expires everything older than a cutoff.
std::string image_key(std::uint64_t id) {
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) k[i] = static_cast<char>((id >> (56 - 8 * i)) & 0xff);
  return k;
}

// The stored value: community and camera on one line each, then the JPEG.
std::string image_value(const SnapshotImages::Image& image) { return image.community + "\n" + image.camera + "\n" + image.jpeg; }

std::optional<SnapshotImages::Image> parse_image(std::string_view v) {
  auto first = v.find('\n');
  if (first == std::string_view::npos) return std::nullopt;
  auto second = v.find('\n', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  return SnapshotImages::Image{std::string(v.substr(0, first)), std::string(v.substr(first + 1, second - first - 1)),
                               std::string(v.substr(second + 1))};
}

}  // namespace

// ---- SnapshotImages ------------------------------------------------------------------------------

// The number of images is kept under a key of its own, written with every change, so opening the
// store never reads the images to count them. Image keys start with a byte below 0x80 (event ids
// are below 2^63), so this key is never in an expiry's range.
constexpr std::string_view kCountKey = "\xff" "count";

struct SnapshotImages::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::mutex mu;  // count and the writes that change it
  std::atomic<std::uint64_t> count{0};

  std::expected<void, std::string> write(rocksdb::WriteBatch& batch, std::uint64_t new_count) {
    batch.Put(kCountKey, std::to_string(new_count));
    auto s = db->Write(rocksdb::WriteOptions(), &batch);
    if (!s.ok()) return std::unexpected(s.ToString());
    count = new_count;
    return {};
  }
};

std::expected<std::unique_ptr<SnapshotImages>, std::string> SnapshotImages::open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.compression = rocksdb::kNoCompression;  // JPEGs do not compress
  options.info_log = rocksdb_log("snapshot images");  // not a LOG file on the store's own disk (common/rocksdb_log.h)
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) return std::unexpected("cannot open snapshot images " + dir + ": " + s.ToString());
  std::unique_ptr<SnapshotImages> images(new SnapshotImages());
  images->impl_ = std::make_unique<Impl>();
  images->impl_->db.reset(raw);
  std::string stored;
  if (raw->Get(rocksdb::ReadOptions(), kCountKey, &stored).ok()) images->impl_->count = std::stoull(stored);
  return images;
}

SnapshotImages::~SnapshotImages() = default;

std::expected<void, std::string> SnapshotImages::put(std::uint64_t snapshot_id, const Image& image) {
  std::lock_guard lock(impl_->mu);
  std::string existing;
  const bool fresh = impl_->db->Get(rocksdb::ReadOptions(), image_key(snapshot_id), &existing).IsNotFound();
  rocksdb::WriteBatch batch;
  batch.Put(image_key(snapshot_id), image_value(image));
  if (auto ok = impl_->write(batch, impl_->count + (fresh ? 1 : 0)); !ok) return std::unexpected("snapshot image: " + ok.error());
  return {};
}

std::optional<SnapshotImages::Image> SnapshotImages::get(std::uint64_t snapshot_id) const {
  std::string value;
  if (!impl_->db->Get(rocksdb::ReadOptions(), image_key(snapshot_id), &value).ok()) return std::nullopt;
  return parse_image(value);
}

std::expected<std::uint64_t, std::string> SnapshotImages::expire(std::int64_t cutoff_ms) {
  if (cutoff_ms <= 0) return 0;
  std::lock_guard lock(impl_->mu);
  const std::string begin = image_key(0), end = image_key(static_cast<std::uint64_t>(cutoff_ms) << 20);
  std::uint64_t n = 0;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(begin); it->Valid() && it->key().compare(end) < 0; it->Next()) ++n;
  if (n == 0) return 0;
  rocksdb::WriteBatch batch;
  batch.DeleteRange(begin, end);
  if (auto ok = impl_->write(batch, impl_->count - std::min<std::uint64_t>(n, impl_->count)); !ok) {
    return std::unexpected("expire snapshot images: " + ok.error());
  }
  // Deleted is not gone until compaction rewrites the files: do it now for this range.
  rocksdb::Slice from(begin), to(end);
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  impl_->db->Flush(rocksdb::FlushOptions());
  if (auto s = impl_->db->CompactRange(compact, &from, &to); !s.ok()) {
    return std::unexpected("compact expired snapshot images: " + s.ToString());
  }
  return n;
}

std::uint64_t SnapshotImages::count() const { return impl_->count; }

// ---- SnapshotAnalyzer ----------------------------------------------------------------------------

std::expected<std::unique_ptr<SnapshotAnalyzer>, std::string> SnapshotAnalyzer::open(const VisionConfig& config,
                                                                                   std::string plate_key) {
  auto faces = FaceDetector::open(config);
  if (!faces) return std::unexpected(faces.error());
  auto plates = PlateReader::open(config);
  if (!plates) return std::unexpected(plates.error());
  std::unique_ptr<SnapshotAnalyzer> a(new SnapshotAnalyzer());
  a->faces_ = std::move(*faces);
  a->plates_ = std::move(*plates);
  a->plate_key_ = std::move(plate_key);
  a->min_plate_chars_ = config.min_plate_chars;
  return a;
}

SnapshotAnalyzer::~SnapshotAnalyzer() = default;

SnapshotAnalysis SnapshotAnalyzer::analyze(const schemas::Event& snapshot) const {
  const auto& body = std::get<schemas::CameraSnapshot>(snapshot.body);
  SnapshotAnalysis out;
  auto& a = out.analysis;
  a.snapshot_id = snapshot.event_id;
  a.gate = body.gate;
  a.snapshot_time_ms = snapshot.ingest_time_ms;
  auto scan = faces_->scan(body.jpeg);
  if (!scan) {
    a.error = scan.error();
    return out;
  }
  a.faces = static_cast<std::uint16_t>(std::min<std::size_t>(scan->faces.size(), 0xffff));
  // Every plate region the reader finds is blurred in the kept image too, legible or not: a plate
  // identifies a household as well as a face does.
  auto plates = plates_->read(body.jpeg);
  std::vector<Box> hidden = scan->faces;
  if (plates) {
    for (const auto& p : *plates) hidden.push_back(p.region);
  }
  auto blurred = faces_->blur_faces(body.jpeg, hidden);
  if (!blurred) {
    a.error = blurred.error();
    return out;
  }
  out.blurred_jpeg = std::move(*blurred);
  // The most confident legible plate, if any; its text becomes a token here and goes no further.
  if (plates) {
    const PlateReading* best = nullptr;
    for (const auto& p : *plates) {
      if (p.text.size() >= min_plate_chars_ && (!best || p.confidence > best->confidence)) best = &p;
    }
    if (best) {
      a.plate_token = schemas::plate_token(plate_key_, best->text);
      a.plate_confidence = best->confidence / 100.0;
      a.plate_x = best->region.x;
      a.plate_y = best->region.y;
      a.plate_width = best->region.width;
      a.plate_height = best->region.height;
    }
  }
  return out;
}

// ---- VisionWorker --------------------------------------------------------------------------------

struct VisionWorker::Impl {
  Impl(VisionWorkerConfig c, SnapshotImages& i, Append a) : config(std::move(c)), images(i), append(std::move(a)) {}
  VisionWorkerConfig config;
  SnapshotImages& images;
  Append append;
  std::vector<std::unique_ptr<SnapshotAnalyzer>> analyzers;  // one per worker: the models are not thread-safe
  Histogram latency{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  std::atomic<std::uint64_t> analysed{0}, unreadable{0}, faces{0}, plates{0}, expired{0};

  // Appends until it works or we are asked to stop: an analysis is never skipped.
  bool append_until_done(const schemas::Event& e, std::stop_token stop) {
    for (auto wait = std::chrono::milliseconds(100); !stop.stop_requested(); wait = std::min(wait * 2, std::chrono::milliseconds(5000))) {
      auto ok = append(e);
      if (ok) return true;
      spdlog::warn("vision: analysis of snapshot {} not appended yet: {}", std::get<schemas::VisionAnalysis>(e.body).snapshot_id, ok.error());
      std::this_thread::sleep_for(wait);
    }
    return false;
  }

  void sweep() {
    // A sweep interval early rather than late: no image outlives the retention.
    const auto cutoff = wall_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(config.retention).count() +
                        config.sweep_interval.count();
    if (auto n = images.expire(cutoff); !n) {
      spdlog::error("vision: {}", n.error());
    } else if (*n > 0) {
      expired += *n;
      spdlog::info("vision: {} blurred snapshots past their retention deleted", *n);
    }
  }
};

VisionWorker::VisionWorker(VisionWorkerConfig config, SnapshotImages& images, Append append)
    : impl_(std::make_unique<Impl>(std::move(config), images, std::move(append))) {
  const unsigned n = std::max(1u, impl_->config.workers);
  for (unsigned i = 0; i < n; ++i) {
    auto a = SnapshotAnalyzer::open(impl_->config.vision, impl_->config.plate_key);
    if (!a) throw std::runtime_error("vision: " + a.error());
    impl_->analyzers.push_back(std::move(*a));
  }
}

VisionWorker::~VisionWorker() = default;

void VisionWorker::run(std::stop_token stop) {
  auto& self = *impl_;
  // Below the processors: when a core is short, the event path goes first. Linux's nice is per
  // thread, and the threads that analyse are started from this one, so they inherit it.
  if (self.config.nice > 0 && ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), self.config.nice) != 0) {
    spdlog::warn("vision: cannot lower its priority: {}", std::strerror(errno));
  }
  KafkaProperties properties{{"group.id", self.config.group_id},
                             {"enable.auto.commit", "false"},
                             {"auto.offset.reset", "earliest"},
                             {"partition.assignment.strategy", "cooperative-sticky"}};
  // Without it a SIGKILLed hub's partitions stay with its ghost until the session times out (45 s).
  if (!self.config.instance_id.empty()) properties["group.instance.id"] = self.config.instance_id;
  auto consumer = make_consumer(self.config.kafka, properties);
  if (!consumer) throw std::runtime_error("vision consumer: " + consumer.error());
  KafkaPartitionsPtr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), self.config.kafka.snapshots_topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(consumer->get(), topics.get())) {
    throw std::runtime_error(std::string("vision subscribe: ") + rd_kafka_err2str(err));
  }
  spdlog::info("vision: analysing {} with {} worker(s)", self.config.kafka.snapshots_topic, self.analyzers.size());
  self.sweep();
  auto next_sweep = std::chrono::steady_clock::now() + self.config.sweep_interval;
  const std::size_t batch_max = self.analyzers.size();
  while (!stop.stop_requested()) {
    if (std::chrono::steady_clock::now() >= next_sweep) {
      self.sweep();
      next_sweep = std::chrono::steady_clock::now() + self.config.sweep_interval;
    }
    std::vector<KafkaMessagePtr> batch;
    for (int timeout = 100; batch.size() < batch_max; timeout = 0) {
      KafkaMessagePtr m(rd_kafka_consumer_poll(consumer->get(), timeout));
      if (!m) break;
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) spdlog::warn("vision: {}", rd_kafka_message_errstr(m.get()));
        continue;
      }
      batch.push_back(std::move(m));
    }
    if (batch.empty()) continue;
    std::vector<std::optional<schemas::Event>> snapshots(batch.size());
    std::vector<SnapshotAnalysis> results(batch.size());
    {
      std::vector<std::jthread> threads;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        auto work = [&, i] {
          auto e = schemas::decode(std::string_view(static_cast<const char*>(batch[i]->payload), batch[i]->len));
          if (!e || !std::holds_alternative<schemas::CameraSnapshot>(e->body)) {
            spdlog::error("vision: {}[{}]@{} is not a camera snapshot; skipped", self.config.kafka.snapshots_topic,
                          batch[i]->partition, batch[i]->offset);
            return;
          }
          try {
            results[i] = self.analyzers[i]->analyze(*e);
          } catch (const std::exception& ex) {
            // One image must not take the hub down (a throw on an analysing thread would end the
            // process): it is logged as unreadable, with the reason, and analysis goes on.
            results[i] = SnapshotAnalysis{};
            results[i].analysis.snapshot_id = e->event_id;
            results[i].analysis.gate = std::get<schemas::CameraSnapshot>(e->body).gate;
            results[i].analysis.snapshot_time_ms = e->ingest_time_ms;
            results[i].analysis.error = std::string("analysis failed: ") + ex.what();
          }
          snapshots[i] = std::move(*e);
        };
        if (i + 1 == batch.size()) work();  // the last one on this thread
        else threads.emplace_back(work);
      }
    }
    KafkaPartitionsPtr done(rd_kafka_topic_partition_list_new(static_cast<int>(batch.size())));
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (snapshots[i]) {
        const auto& snapshot = *snapshots[i];
        auto& r = results[i];
        if (!r.blurred_jpeg.empty()) {
          auto stored = self.images.put(snapshot.event_id, {snapshot.community.str(), snapshot.device.str(), r.blurred_jpeg});
          if (!stored) spdlog::error("vision: {}", stored.error());
        }
        schemas::Event e;
        e.device = snapshot.device;
        e.community = snapshot.community;
        e.device_time_ms = wall_ms();
        e.body = r.analysis;
        if (!self.append_until_done(e, stop)) return;  // stopping: the batch is not committed
        ++self.analysed;
        if (!r.analysis.error.empty()) ++self.unreadable;
        self.faces += r.analysis.faces;
        if (!r.analysis.plate_token.empty()) ++self.plates;
        self.latency.observe(static_cast<double>(wall_ms() - snapshot.ingest_time_ms) / 1000.0);
      }
      rd_kafka_topic_partition_list_add(done.get(), rd_kafka_topic_name(batch[i]->rkt), batch[i]->partition)->offset =
          batch[i]->offset + 1;
    }
    if (auto err = rd_kafka_commit(consumer->get(), done.get(), /*async=*/0)) {
      spdlog::warn("vision: commit: {}", rd_kafka_err2str(err));
    }
  }
  rd_kafka_consumer_close(consumer->get());
}

VisionStats VisionWorker::stats() const {
  return {impl_->analysed, impl_->unreadable, impl_->faces, impl_->plates, impl_->expired};
}

const Histogram& VisionWorker::latency() const { return impl_->latency; }

}  // namespace courtyard::processors
