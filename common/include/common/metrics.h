#pragma once
// Counters and gauges with labels, rendered in the Prometheus text format. Thread-safe.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace courtyard {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A Prometheus histogram with fixed upper bounds. Thread-safe.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Rendered as name_bucket{le=...}, name_sum, name_count.
  std::string render(const std::string& name, const std::string& help) const;
  std::vector<std::uint64_t> counts() const;  // per bucket (not cumulative), last one is +Inf
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<std::uint64_t> counts_;
  double sum_ = 0;
};

// The q-quantile (0..1) of a histogram's per-bucket counts, interpolated inside the bucket.
double histogram_quantile(const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts, double q);

class Metrics {
 public:
  // Declares a family; `type` is "counter" or "gauge".
  void describe(const std::string& name, const std::string& type, const std::string& help);
  void add(const std::string& name, const Labels& labels, double delta = 1);
  void set(const std::string& name, const Labels& labels, double value);
  std::string render() const;

 private:
  struct Family {
    std::string type, help;
    std::map<Labels, double> series;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace courtyard
