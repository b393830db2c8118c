#pragma once
// The vision processor: reads camera snapshots (with their images) from the snapshots topic in a
// consumer group of its own, so analysis never holds up the processors' event path, and for each
// one
//   - counts faces and stores the image with every face blurred (SnapshotImages; nothing else of
//     the image is kept, and that only for the retention);
//   - reads a licence plate, if any, and turns its text into the pseudonymous plate token;
//   - appends a vision.analysis event to the log through `append` (the hub sends it to ingest, the
//     single writer of the community's stream). The folds decide what it means: tailgating, a
//     plate that disagrees with the vehicle pass. Replays read those events, never the images.
// At most `workers` snapshots are analysed at once. Offsets are committed once a batch's events
// are appended: at least once, and the folds ignore an analysis of a snapshot already analysed.
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "common/kafka.h"
#include "common/metrics.h"
#include "processors/vision.h"
#include "schemas/event.h"

namespace courtyard::processors {

// Blurred snapshots by snapshot id (the snapshot event's id, which starts with its ingest time).
// RocksDB; thread-safe.
class SnapshotImages {
 public:
  struct Image {
    std::string community, camera;
    std::string jpeg;  // faces blurred
  };
  static std::expected<std::unique_ptr<SnapshotImages>, std::string> open(const std::string& dir);
  ~SnapshotImages();
  std::expected<void, std::string> put(std::uint64_t snapshot_id, const Image& image);
  std::optional<Image> get(std::uint64_t snapshot_id) const;
  // Deletes every image ingested before `cutoff_ms` and compacts the range, so the bytes leave
  // the disk too. Returns how many were deleted.
  std::expected<std::uint64_t, std::string> expire(std::int64_t cutoff_ms);
  std::uint64_t count() const;

 private:
  SnapshotImages() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What the worker reads off one snapshot.
struct SnapshotAnalysis {
  schemas::VisionAnalysis analysis;
  std::string blurred_jpeg;  // empty when the image could not be read
};

// One snapshot's analysis, pure apart from the models: used by the worker, the tests and the bench.
class SnapshotAnalyzer {
 public:
  static std::expected<std::unique_ptr<SnapshotAnalyzer>, std::string> open(const VisionConfig& config,
                                                                            std::string plate_key);
  ~SnapshotAnalyzer();
  // `snapshot` is the event as ingest wrote it to the snapshots topic (its image included).
  SnapshotAnalysis analyze(const schemas::Event& snapshot) const;

 private:
  SnapshotAnalyzer() = default;
  std::unique_ptr<FaceDetector> faces_;
  std::unique_ptr<PlateReader> plates_;
  std::string plate_key_;
  std::size_t min_plate_chars_ = 5;
};

struct VisionWorkerConfig {
  KafkaConfig kafka;
  std::string group_id = "courtyard-vision";
  std::string instance_id;                             // static membership: a restarted hub takes its partitions back at once
  unsigned workers = 1;                                // snapshots analysed at once
  VisionConfig vision;
  std::string plate_key;                               // HMAC key of plate tokens
  std::chrono::minutes retention{72 * 60};             // blurred images are deleted after this
  std::chrono::milliseconds sweep_interval{60'000};    // how often expired images are deleted
  int nice = 10;                                       // the analysing threads' nice value (0: unchanged)
};

struct VisionStats {
  std::uint64_t analysed = 0, unreadable = 0, faces = 0, plates = 0, expired = 0;
};

class VisionWorker {
 public:
  // Appends one analysis event to the log (its offset); errors are retried.
  using Append = std::function<std::expected<std::int64_t, std::string>(const schemas::Event&)>;
  // Throws when the models cannot be loaded.
  VisionWorker(VisionWorkerConfig config, SnapshotImages& images, Append append);
  ~VisionWorker();
  // Consumes until `stop` fires. Throws only when the consumer cannot start.
  void run(std::stop_token stop);
  VisionStats stats() const;
  // Seconds from a snapshot's ingest to its analysis being appended.
  const Histogram& latency() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::processors
