#pragma once
// CPU time of the processes a bench drives (hub, ingest, the brokers), read from /proc: what one
// step of a bench cost each of them, in share of a core and per event.
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace courtyard::bench {

// User + system seconds `pid` has used so far; 0 when it is gone.
inline double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; fields >> x && f.size() < 13;) f.push_back(x);
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Named processes ("hub=123"), and the bench itself as `self`, and what each used between
// start() and shares().
class ProcessCpu {
 public:
  // Each "name=pid"; a malformed one is ignored.
  ProcessCpu(const std::vector<std::string>& named, const std::string& self) {
    pids_.emplace_back(self, static_cast<int>(::getpid()));
    for (const auto& n : named) {
      const auto eq = n.find('=');
      if (eq == std::string::npos) continue;
      const int pid = std::atoi(n.c_str() + eq + 1);
      if (pid > 0) pids_.emplace_back(n.substr(0, eq), pid);
    }
  }
  void start() {
    for (const auto& [name, pid] : pids_) at_start_[name] = cpu_seconds(pid);
  }
  // The share of one core each used since start(), over `seconds` of wall time.
  std::map<std::string, double> shares(double seconds) const {
    std::map<std::string, double> used;
    for (const auto& [name, pid] : pids_) used[name] = (cpu_seconds(pid) - at_start_.at(name)) / seconds;
    return used;
  }

 private:
  std::vector<std::pair<std::string, int>> pids_;
  std::map<std::string, double> at_start_;
};

}  // namespace courtyard::bench
