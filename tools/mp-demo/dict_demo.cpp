// "Data sharing between process: dict or list" from the seeds (../shared/seeds/001_*.txt).
// The Python:
//
//   from multiprocessing import Process, current_process
//   from multiprocessing import Manager
//   from time import sleep
//
//   def foo(d):
//       t = current_process()
//       print(f"In foo[{t.name}]: d contains {dict(d)}")
//       sleep(2)
//       d["name"] = "Smith"
//       d["country"] = "India"
//
//   def bar(arr):
//       t = current_process()
//       sleep(3)
//       print(f"In bar[{t.name}]: d  contains {dict(d)}")
//       del d["role"]
//
//   if __name__ == '__main__':
//       manager = Manager()
//       d = manager.dict()
//       d["name"] = "Jones"
//       d["role"] = "Developer"
//       d["place"] = "Hyderabad"
//       t1 = Process(target=foo, args=(d,))
//       t2 = Process(target=bar, args=(d,))
//       t1.start(); t2.start(); t1.join(); t2.join()
//       print("In main: contents of d =", dict(d))
//       print("In main: d =", d)
//
// The seed's bar reads the global `d` (which only works with fork); here it gets d as its
// argument, like foo. Both children meet at a Barrier first and count their sleeps from
// there (a spawned child may take longer to start than the delay), so bar always reads
// `delay` after foo's writes. The dict prints in insertion order, as Python's does.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <mp/mp.hpp>

#include "demos.hpp"

namespace mp_demo {
namespace {

using Dict = mp::SharedDict<std::string, std::string>;

// Python's repr() of a str (enough for the demo's words).
std::string repr(const std::string& text) {
  const char quote =
      text.find('\'') != std::string::npos && text.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char c : text) {
    if (c == quote || c == '\\') out += '\\';
    out += c;
  }
  return out + quote;
}

// Python's repr() of dict(d): {'name': 'Jones', ...}, in insertion order.
std::string repr(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string out = "{";
  for (const auto& [key, value] : items) {
    if (out.size() > 1) out += ", ";
    out += repr(key) + ": " + repr(value);
  }
  return out + "}";
}

void foo(Dict d, mp::Barrier start_together, Options options) {
  const std::string& name = mp::current_process().name();
  std::printf("In foo[%s]: d contains %s\n", name.c_str(), repr(d.items()).c_str());
  std::fflush(stdout);
  start_together.wait();
  pause(options, 2);
  d["name"] = "Smith";
  d["country"] = "India";
}

void bar(Dict d, mp::Barrier start_together, Options options) {
  const std::string& name = mp::current_process().name();
  start_together.wait();
  pause(options, 3);
  std::printf("In bar[%s]: d  contains %s\n", name.c_str(), repr(d.items()).c_str());
  std::fflush(stdout);
  d.erase("role");
}

}  // namespace

int dict_demo(const Options& options) {
  if (!options.positional.empty()) throw UsageError{"dict takes no arguments"};
  mp::Manager manager;
  auto d = manager.dict<std::string, std::string>();
  d["name"] = "Jones";
  d["role"] = "Developer";
  d["place"] = "Hyderabad";
  mp::Barrier start_together(2);
  mp::Process t1({.start_method = options.start_method}, &foo, d, start_together, options);
  mp::Process t2({.start_method = options.start_method}, &bar, d, start_together, options);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  std::printf("In main: contents of d = %s\n", repr(d.items()).c_str());
  // Python prints the proxy's repr here: <DictProxy object, typeid 'dict' at 0x...>.
  std::printf("In main: d = <mp::SharedDict object, typeid 'dict', %zu items>\n", d.size());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace mp_demo
