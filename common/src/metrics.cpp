#include "common/metrics.h"

#include <cmath>
#include <sstream>

namespace courtyard {
namespace {

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.type = type;
  f.help = help;
}

void Metrics::add(const std::string& name, const Labels& labels, double delta) {
  std::lock_guard lock(mu_);
  families_[name].series[labels] += delta;
}

void Metrics::set(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  families_[name].series[labels] = value;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out << "# HELP " << name << ' ' << f.help << '\n';
    if (!f.type.empty()) out << "# TYPE " << name << ' ' << f.type << '\n';
    for (const auto& [labels, v] : f.series) {
      out << name;
      if (!labels.empty()) {
        out << '{';
        for (std::size_t i = 0; i < labels.size(); ++i) {
          out << (i ? "," : "") << labels[i].first << "=\"" << escape(labels[i].second) << '"';
        }
        out << '}';
      }
      if (std::floor(v) == v && std::abs(v) < 1e15) {
        out << ' ' << static_cast<long long>(v) << '\n';
      } else {
        out << ' ' << v << '\n';
      }
    }
  }
  return out.str();
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  std::lock_guard lock(mu_);
  ++counts_[i];
  sum_ += value;
}

std::vector<std::uint64_t> Histogram::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " histogram\n";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i];
    out << name << "_bucket{le=\"";
    if (i < bounds_.size()) {
      out << bounds_[i];
    } else {
      out << "+Inf";
    }
    out << "\"} " << cumulative << '\n';
  }
  out << name << "_sum " << sum_ << '\n' << name << "_count " << cumulative << '\n';
  return out.str();
}

double histogram_quantile(const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts, double q) {
  std::uint64_t total = 0;
  for (auto c : counts) total += c;
  if (total == 0) return 0;
  double rank = q * static_cast<double>(total);
  double seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (seen + static_cast<double>(counts[i]) >= rank && counts[i] > 0) {
      double lo = i == 0 ? 0 : bounds[i - 1];
      double hi = i < bounds.size() ? bounds[i] : lo;
      return lo + (hi - lo) * (rank - seen) / static_cast<double>(counts[i]);
    }
    seen += static_cast<double>(counts[i]);
  }
  return bounds.empty() ? 0 : bounds.back();
}

}  // namespace courtyard
