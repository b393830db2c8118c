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

double Metrics::value(const std::string& name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto f = families_.find(name);
  if (f == families_.end()) return 0;
  auto s = f->second.series.find(labels);
  return s == f->second.series.end() ? 0 : s->second;
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

}  // namespace courtyard
