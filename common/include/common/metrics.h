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

class Metrics {
 public:
  // Declares a family; `type` is "counter" or "gauge".
  void describe(const std::string& name, const std::string& type, const std::string& help);
  void add(const std::string& name, const Labels& labels, double delta = 1);
  void set(const std::string& name, const Labels& labels, double value);
  double value(const std::string& name, const Labels& labels) const;
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
